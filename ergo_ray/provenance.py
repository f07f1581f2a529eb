"""Record how an output was made: resolved config and package versions, next to the data."""

from __future__ import annotations

import json
import platform
import subprocess
from importlib import metadata
from pathlib import Path

from ergo_ray.config.loader import resolved_yaml
from ergo_ray.config.schema import RunConfig
from ergo_ray.io import storage

PACKAGES = ("ergo_ray", "ray", "torch", "torchvision", "lightly", "FrEIA", "galsim",
            "astropy", "pyarrow", "numpy", "scipy")


def versions() -> dict[str, str]:
    """Return the installed versions of Python and the packages that shape results."""
    out = {"python": platform.python_version()}
    for name in PACKAGES:
        try:
            out[name] = metadata.version(name)
        except metadata.PackageNotFoundError:
            out[name] = "not installed"
    return out


def _git_sha() -> str:
    try:
        res = subprocess.run(
            ["git", "rev-parse", "HEAD"], capture_output=True, text=True, timeout=5,
            cwd=Path(__file__).resolve().parent, check=False,
        )
    except (OSError, subprocess.TimeoutExpired):
        return "unknown"
    return res.stdout.strip() or "unknown"


_SECRET_KEYS = ("key", "secret", "token", "password")


def redact_argv(argv: list[str]) -> list[str]:
    """Mask credential values in command-line arguments (``--set storage.secret=...``).

    Parameters
    ----------
    argv : list of str
        Arguments as given.

    Returns
    -------
    list of str
        The same arguments with the value of every ``*.key=``, ``*.secret=``, ``*token*=`` or
        ``*password*=`` setting replaced by ``***``, and user-info removed from URLs.
    """
    out = []
    for arg in argv:
        name, eq, _value = arg.partition("=")
        leaf = name.rsplit(".", 1)[-1].lower()
        if eq and any(k in leaf for k in _SECRET_KEYS):
            out.append(f"{name}=***")
        else:
            out.append(storage.redact(arg))
    return out


def write(run_url: str, cfg: RunConfig, stage: str, argv: list[str] | None = None) -> None:
    """Write ``_meta/{config.yaml, versions.json}`` under an output URL.

    Parameters
    ----------
    run_url : str
        Output folder URL.
    cfg : RunConfig
        The resolved configuration (credentials are excluded from the dump).
    stage : str
        The CLI stage that produced the output.
    argv : list of str, optional
        The stage's command-line arguments.
    """
    meta = storage.join(run_url, "_meta")
    storage.write_bytes(storage.join(meta, "config.yaml"), resolved_yaml(cfg).encode(), cfg.storage)
    info = {"stage": stage, "argv": redact_argv(argv or []), "git": _git_sha(),
            "versions": versions()}
    storage.write_bytes(
        storage.join(meta, "versions.json"), json.dumps(info, indent=2).encode(), cfg.storage
    )
