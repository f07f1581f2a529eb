"""Exact k-nearest-neighbour distances, batched on the model's device.

The OOD score (method.md §7) needs the distance to the k-th neighbour for up to 10^6 × 256
representations. On a CUDA device this computes exact distances block by block with
``torch.cdist`` and keeps the k smallest with ``topk``: no Python loop over points, memory
bounded by the block size. On the CPU, L1 distances (the method's metric) go to faiss's
exact flat index (``IndexFlat`` with ``METRIC_L1``), which ``bench/bench_ood.py`` measured
at several times ``torch.cdist(p=1)`` on the same rows and threads.
"""

from __future__ import annotations

from collections.abc import Iterator
from typing import Literal

import numpy as np
import torch

Metric = Literal["l1", "l2"]

__all__ = ["Metric", "knn_blocks", "kth_neighbour_distance"]


def knn_blocks(
    query: torch.Tensor, reference: torch.Tensor, k: int, *, p: float = 2.0, block: int = 2048,
    zero_diagonal: bool = False,
) -> Iterator[tuple[slice, torch.Tensor, torch.Tensor]]:
    """Yield the k nearest reference points of each block of queries: the one k-NN kernel.

    Parameters
    ----------
    query : torch.Tensor
        (N, D) query points.
    reference : torch.Tensor
        (M, D) reference points, on the same device; ``k <= M``.
    k : int
        Neighbours.
    p : float
        Minkowski exponent of the distance (1: Manhattan, 2: Euclidean).
    block : int
        Query rows per block (bounds memory to ``block × M`` distances).
    zero_diagonal : bool
        ``query`` is ``reference``: each point's distance to itself is set to exactly 0
        (``cdist``'s matrix-product path leaves a rounding residue there).

    Yields
    ------
    rows : slice
        The block's query rows.
    distances : torch.Tensor
        (rows, k) distances, ascending.
    indices : torch.Tensor
        (rows, k) reference indices of those distances.
    """
    for start in range(0, query.shape[0], block):
        rows = slice(start, start + block)
        d = torch.cdist(query[rows], reference, p=p)
        if zero_diagonal:
            own = torch.arange(d.shape[0], device=d.device)
            d[own, own + start] = 0.0
        vals, idx = torch.topk(d, k, dim=1, largest=False, sorted=True)
        yield rows, vals, idx


def kth_neighbour_distance(
    query: np.ndarray | torch.Tensor,
    reference: np.ndarray | torch.Tensor,
    k: int,
    metric: Metric = "l1",
    exclude_self: bool = False,
    block: int = 2048,
    device: str | torch.device | None = None,
    return_index: bool = False,
    backend: Literal["auto", "torch", "faiss"] = "auto",
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
    backend : {"auto", "torch", "faiss"}
        ``auto``: faiss for L1 on the CPU, torch otherwise; ``faiss`` needs the CPU and L1.

    Returns
    -------
    numpy.ndarray or tuple of numpy.ndarray
        float64 (N,) distances, and int64 (N,) nearest indices when ``return_index``.

    Raises
    ------
    ValueError
        If ``k`` exceeds the number of reference points available.
    """
    if device is None:
        device = "cuda" if torch.cuda.is_available() else "cpu"
    dev = torch.device(device)
    q, r = (
        (x if torch.is_tensor(x) else torch.as_tensor(np.asarray(x, dtype=np.float32)))
        .to(dev, torch.float32)
        for x in (query, reference)
    )
    kk = k + 1 if exclude_self else k
    if kk > r.shape[0]:
        msg = f"k={k} needs at least {kk} reference points, got {r.shape[0]}"
        raise ValueError(msg)
    use_faiss = backend == "faiss" or (
        backend == "auto" and dev.type == "cpu" and metric == "l1"
    )
    if use_faiss and (dev.type != "cpu" or metric != "l1"):
        msg = f"backend='faiss' computes L1 distances on the CPU, not {metric} on {dev}"
        raise ValueError(msg)
    if use_faiss:
        d_np, i_np = _faiss_l1(q.numpy(), r.numpy(), kk, block)
        nearest_np = i_np[:, 1 if exclude_self else 0].astype(np.int64)
        dist = d_np[:, kk - 1].astype(np.float64)
        return (dist, nearest_np) if return_index else dist
    p = 1.0 if metric == "l1" else 2.0
    out = torch.empty(q.shape[0], dtype=torch.float64)
    nearest = torch.empty(q.shape[0], dtype=torch.int64)
    with torch.inference_mode():
        for rows, vals, idx in knn_blocks(q, r, kk, p=p, block=block):
            out[rows] = vals[:, kk - 1].double().cpu()
            nearest[rows] = idx[:, 1 if exclude_self else 0].cpu()
    if return_index:
        return out.numpy(), nearest.numpy()
    return out.numpy()


def _faiss_l1(
    query: np.ndarray, reference: np.ndarray, k: int, block: int
) -> tuple[np.ndarray, np.ndarray]:
    """Exact L1 k-NN with faiss's flat index, on torch's CPU thread count."""
    import faiss

    faiss.omp_set_num_threads(max(1, torch.get_num_threads()))
    index = faiss.IndexFlat(reference.shape[1], faiss.METRIC_L1)
    index.add(np.ascontiguousarray(reference, dtype=np.float32))
    dist = np.empty((query.shape[0], k), np.float32)
    idx = np.empty((query.shape[0], k), np.int64)
    step = max(block, 1) * 8
    for start in range(0, query.shape[0], step):
        chunk = np.ascontiguousarray(query[start : start + step], dtype=np.float32)
        dist[start : start + step], idx[start : start + step] = index.search(chunk, k)
    return dist, idx
