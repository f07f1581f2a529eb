"""Exact k-nearest-neighbour distances, batched on the model's device.

The OOD score (method.md §7) needs the distance to the k-th neighbour for up to 10^6 × 256
representations. This computes exact distances block by block with ``torch.cdist`` and keeps
the k smallest with ``topk``: no Python loop over points, memory bounded by the block size.
"""

from __future__ import annotations

from typing import Literal

import numpy as np
import torch

Metric = Literal["l1", "l2"]


def kth_neighbour_distance(
    query: np.ndarray | torch.Tensor,
    reference: np.ndarray | torch.Tensor,
    k: int,
    metric: Metric = "l1",
    exclude_self: bool = False,
    block: int = 2048,
    device: str | torch.device | None = None,
    return_index: bool = False,
) -> np.ndarray | tuple[np.ndarray, np.ndarray]:
    """Distance from each query point to its k-th nearest reference point.

    Parameters
    ----------
    query : array-like
        (N, D) query points.
    reference : array-like
        (M, D) reference points.
    k : int
        Neighbour rank (1 = nearest).
    metric : {"l1", "l2"}
        Manhattan (the method's choice) or Euclidean distance.
    exclude_self : bool
        When ``query`` is ``reference`` (same rows, same order), skip each point's zero
        distance to itself, i.e. return the (k+1)-th distance.
    block : int
        Query rows per block.
    device : str or torch.device, optional
        Where to compute (default: CUDA if available, else CPU).
    return_index : bool
        Also return the index of each query's nearest (rank-1, self excluded) reference point.

    Returns
    -------
    numpy.ndarray or tuple of numpy.ndarray
        float64 (N,) distances, and int64 (N,) nearest indices when ``return_index``.

    Raises
    ------
    ValueError
        If ``k`` exceeds the number of reference points available.
    """
    dev = torch.device(device) if device else torch.device("cuda" if torch.cuda.is_available() else "cpu")
    q = torch.as_tensor(np.asarray(query, dtype=np.float32) if not torch.is_tensor(query) else query)
    r = torch.as_tensor(np.asarray(reference, dtype=np.float32) if not torch.is_tensor(reference) else reference)
    q = q.to(dev, torch.float32)
    r = r.to(dev, torch.float32)
    kk = k + 1 if exclude_self else k
    if kk > r.shape[0]:
        msg = f"k={k} needs at least {kk} reference points, got {r.shape[0]}"
        raise ValueError(msg)
    p = 1.0 if metric == "l1" else 2.0
    out = torch.empty(q.shape[0], dtype=torch.float64)
    nearest = torch.empty(q.shape[0], dtype=torch.int64)
    with torch.inference_mode():
        for start in range(0, q.shape[0], block):
            d = torch.cdist(q[start : start + block], r, p=p)
            vals, idx = torch.topk(d, kk, dim=1, largest=False, sorted=True)
            out[start : start + block] = vals[:, kk - 1].double().cpu()
            nearest[start : start + block] = idx[:, 1 if exclude_self else 0].cpu()
    if return_index:
        return out.numpy(), nearest.numpy()
    return out.numpy()
