"""Neural networks: the image encoder and NNCLR (heads, support set, loss).

Imports are lazy so that ``import ergo_ray.models.<module>`` pulls in only what that module
needs (lightly is imported only with :mod:`ergo_ray.models.nnclr`).
"""

from __future__ import annotations

import importlib
from typing import Any

__all__ = ["NNCLR", "Encoder", "NNCLRCriterion", "build_encoder"]

_WHERE = {
    "Encoder": "ergo_ray.models.encoder",
    "build_encoder": "ergo_ray.models.encoder",
    "NNCLR": "ergo_ray.models.nnclr",
    "NNCLRCriterion": "ergo_ray.models.nnclr",
}


def __getattr__(name: str) -> Any:
    if name in _WHERE:
        return getattr(importlib.import_module(_WHERE[name]), name)
    msg = f"module 'ergo_ray.models' has no attribute {name!r}"
    raise AttributeError(msg)
