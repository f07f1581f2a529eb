"""Typed configuration: one frozen tree, loaded from YAML presets, files and overrides."""

from ergo_ray.config.loader import load_config, resolved_yaml
from ergo_ray.config.schema import RunConfig

__all__ = ["RunConfig", "load_config", "resolved_yaml"]
