"""Load a :class:`RunConfig` from a preset, YAML files and ``a.b=c`` overrides."""

from __future__ import annotations

import importlib.resources
from collections.abc import Iterable, Mapping
from pathlib import Path
from typing import Any

import yaml
from pydantic import ValidationError

from ergo_ray.config.schema import RunConfig
from ergo_ray.errors import ConfigError

PRESETS = ("local", "ci", "paper")


def _preset_dict(name: str) -> dict[str, Any]:
    if name not in PRESETS:
        msg = f"unknown preset {name!r}; choose one of {', '.join(PRESETS)}"
        raise ConfigError(msg)
    text = importlib.resources.files("ergo_ray.config").joinpath(f"presets/{name}.yaml")
    data = yaml.safe_load(text.read_text()) or {}
    data["preset"] = name
    return data


def _merge(base: dict[str, Any], extra: Mapping[str, Any]) -> dict[str, Any]:
    out = dict(base)
    for key, value in extra.items():
        if isinstance(value, Mapping) and isinstance(out.get(key), dict):
            out[key] = _merge(out[key], value)
        else:
            out[key] = value
    return out


def _override_dict(item: str) -> dict[str, Any]:
    if "=" not in item:
        msg = f"override {item!r} must look like section.key=value"
        raise ConfigError(msg)
    dotted, raw = item.split("=", 1)
    value = yaml.safe_load(raw) if raw else None
    out: dict[str, Any] = {}
    node = out
    parts = dotted.strip().split(".")
    for part in parts[:-1]:
        node = node.setdefault(part, {})
    node[parts[-1]] = value
    return out


def _format_error(err: ValidationError, source: str) -> str:
    first = err.errors()[0]
    loc = ".".join(str(p) for p in first["loc"]) or "<root>"
    more = f" (+{len(err.errors()) - 1} more)" if len(err.errors()) > 1 else ""
    return f"config key '{loc}': {first['msg']} [{source}]{more}"


def load_config(
    preset: str = "local",
    files: Iterable[str | Path] = (),
    overrides: Iterable[str] = (),
) -> RunConfig:
    """Build the run configuration.

    Merge order: preset, then each YAML file, then each override; validated once.

    Parameters
    ----------
    preset : {"local", "ci", "paper"}
        Named preset shipped with the package.
    files : iterable of str or Path
        User YAML files, merged in order.
    overrides : iterable of str
        ``section.key=value`` strings; the value is parsed as YAML.

    Returns
    -------
    RunConfig
        The frozen, validated configuration.

    Raises
    ------
    ConfigError
        On an unknown preset, an unreadable file, an unknown key or a wrong type. The
        message is one line naming the dotted key.
    """
    data = _preset_dict(preset)
    sources = [f"preset {preset}"]
    for f in files:
        path = Path(f)
        try:
            loaded = yaml.safe_load(path.read_text()) or {}
        except OSError as err:
            msg = f"cannot read config file {path}: {err.strerror}"
            raise ConfigError(msg) from err
        except yaml.YAMLError as err:
            msg = f"config file {path} is not valid YAML: {str(err).splitlines()[0]}"
            raise ConfigError(msg) from err
        if not isinstance(loaded, dict):
            msg = f"config file {path} must hold a mapping, got {type(loaded).__name__}"
            raise ConfigError(msg)
        loaded.pop("preset", None)
        data = _merge(data, loaded)
        sources.append(str(path))
    for item in overrides:
        data = _merge(data, _override_dict(item))
        sources.append(f"--set {item}")
    try:
        return RunConfig.model_validate(data)
    except ValidationError as err:
        raise ConfigError(_format_error(err, ", ".join(sources))) from None


def resolved_yaml(cfg: RunConfig) -> str:
    """Return the resolved configuration as YAML, without credentials.

    Parameters
    ----------
    cfg : RunConfig
        Configuration to serialise.

    Returns
    -------
    str
        YAML text that :func:`load_config` accepts as a file.
    """
    return yaml.safe_dump(cfg.model_dump(mode="json"), sort_keys=False)
