"""Training: Ray Data inputs, the NNCLR and cINN loops on Ray Train, checkpoints.

NNCLR: :mod:`~ergo_ray.train.data` (prepared shards → datasets),
:mod:`~ergo_ray.train.clr_trainer` (one epoch), :mod:`~ergo_ray.train.clr_loop` (the
per-worker loop), :mod:`~ergo_ray.train.nnclr_stage` (the ``train-nnclr`` driver),
:mod:`~ergo_ray.train.knn_monitor`, :mod:`~ergo_ray.train.checkpoint` (``load_encoder``).
cINN: :mod:`~ergo_ray.train.cinn_fit` (the epoch loop), :mod:`~ergo_ray.train.cinn_loop`
(its Ray Train run), :mod:`~ergo_ray.train.cinn_stage` (the ``train-cinn`` driver).
Submodules are imported on demand, so that importing one does not pull in Ray.
"""

from __future__ import annotations

__all__: list[str] = []
