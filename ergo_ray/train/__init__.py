"""Training: Ray Data inputs, the NNCLR and cINN loops on Ray Train, checkpoints.

Submodules are imported on demand (``from ergo_ray.train.checkpoint import load_encoder``)
so that importing one does not pull in Ray.
"""

from __future__ import annotations

__all__ = ["checkpoint", "clr_loop", "data", "knn_monitor"]
