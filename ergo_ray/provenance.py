"""Record how an output was made: resolved config and package versions, next to the data."""

from __future__ import annotations

import json
import platform
import re
import subprocess
from collections.abc import Sequence
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
_USERINFO = re.compile(r"(\w+://)[^/@\s]*@")


def redact_argv(argv: Sequence[str]) -> list[str]:
    """Mask credentials in command-line arguments: the one place that does.

    Parameters
    ----------
    argv : sequence of str
        Arguments as given (``--set storage.secret=...``, ``--set=storage.secret=...``,
        URLs with ``user:password@``).

    Returns
    -------
    list of str
        The same arguments with the value of every setting whose last key component contains
        ``key``, ``secret``, ``token`` or ``password`` replaced by ``***``, and user-info
        removed from every URL.
    """
    out = []
    for arg in argv:
        option, body = "", arg
        if arg.startswith("--") and arg.count("=") >= 2:  # --set=KEY=VALUE
            option, _, body = arg.partition("=")
            option += "="
        name, eq, _value = body.partition("=")
        leaf = name.rsplit(".", 1)[-1].lower()
        if eq and any(k in leaf for k in _SECRET_KEYS):
            out.append(f"{option}{name}=***")
        else:
            out.append(_USERINFO.sub(r"\1", arg))
    return out


def write(run_url: str, cfg: RunConfig, stage: str, argv: Sequence[str] | None = None) -> None:
    """Write ``_meta/{config.yaml, versions.json}`` under an output URL.

    Parameters
    ----------
    run_url : str
        Output folder URL.
    cfg : RunConfig
        The resolved configuration (credentials are excluded from the dump).
    stage : str
        The CLI stage that produced the output.
    argv : sequence of str, optional
        The stage's command-line arguments as typed (``args.argv`` of a CLI stage);
        credentials are masked by :func:`redact_argv` before they are written.
    """
    meta = storage.join(run_url, "_meta")
    storage.write_bytes(storage.join(meta, "config.yaml"), resolved_yaml(cfg).encode(), cfg.storage)
    info = {"stage": stage, "argv": redact_argv(argv or []), "git": _git_sha(),
            "versions": versions()}
    storage.write_bytes(
        storage.join(meta, "versions.json"), json.dumps(info, indent=2).encode(), cfg.storage
    )
