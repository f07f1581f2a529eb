"""Where a bundle's networks run when no device is asked for: :func:`default_device`."""

from __future__ import annotations

import logging
import sys

import torch

log = logging.getLogger("ergo_ray")

__all__ = ["default_device"]


def _ray_assigned_gpus() -> float:
    """GPUs Ray reserved for this task or actor (0 outside Ray or in a driver)."""
    ray = sys.modules.get("ray")  # never import Ray just to ask
    if ray is None or not ray.is_initialized():
        return 0.0
    ctx = ray.get_runtime_context()
    if ctx.worker.mode != ray.WORKER_MODE:  # a driver holds no resources
        return 0.0
    return float(ctx.get_assigned_resources().get("GPU", 0.0))


def default_device() -> torch.device:
    """Return CUDA when torch sees a CUDA device, else the CPU.

    A Ray task or actor that holds a ``GPU`` resource but whose torch sees no CUDA
    device (a CPU-only torch build, a missing driver, or a logical ``GPU`` resource
    with no device behind it, as on a test cluster) runs on the CPU, with a warning.

    Returns
    -------
    torch.device
        ``cuda`` or ``cpu``.
    """
    if torch.cuda.is_available():
        return torch.device("cuda")
    gpus = _ray_assigned_gpus()
    if gpus > 0:
        log.warning(
            "Ray assigned %g GPU to this process but torch %s sees no CUDA device "
            "(torch.cuda.is_available() is False); the model runs on the CPU",
            gpus,
            torch.__version__,
        )
    return torch.device("cpu")
