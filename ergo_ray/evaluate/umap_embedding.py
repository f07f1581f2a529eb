"""The joint UMAP of ``compare`` (method.md §7), with exact neighbours found by torch.

umap-learn finds each point's neighbours itself: exactly below 4,096 points, otherwise with
a pynndescent index whose numba kernels compile in every new process (~23 s of each
``compare`` on the development machine, for a few thousand points). Here the neighbours
are exact and computed with torch, and handed to UMAP as ``precomputed_knn`` together with
an exact search object for ``UMAP.transform``, so no pynndescent kernel is compiled.
"""

from __future__ import annotations

import warnings
from collections.abc import Mapping

import numpy as np
import torch

from ergo_ray.evaluate.ood import standardise
from ergo_ray.shared.knn import knn_blocks

__all__ = ["ExactSearch", "exact_neighbours", "joint_umap"]


def exact_neighbours(query: np.ndarray, k: int,
                     reference: np.ndarray | None = None) -> tuple[np.ndarray, np.ndarray]:
    """Find the k nearest reference points of each query point by exact Euclidean distance.

    Parameters
    ----------
    query : numpy.ndarray
        (N, D) points.
    k : int
        Neighbours per query point.
    reference : numpy.ndarray, optional
        (M, D) points, ``k <= M``. None: the query points themselves, each its own first
        neighbour at distance exactly 0 (UMAP takes a point's nearest non-zero distance as
        its local scale, and a rounding residue on the diagonal would stand in for it).

    Returns
    -------
    indices : numpy.ndarray
        int32 (N, k), nearest first.
    distances : numpy.ndarray
        float32 (N, k), ascending.
    """
    q = torch.as_tensor(np.asarray(query, dtype=np.float64))
    r = q if reference is None else torch.as_tensor(np.asarray(reference, dtype=np.float64))
    idx = np.empty((len(q), k), np.int32)
    dist = np.empty((len(q), k), np.float32)
    with torch.inference_mode():
        for rows, vals, ind in knn_blocks(q, r, k, p=2.0, zero_diagonal=reference is None):
            idx[rows] = ind.numpy()
            dist[rows] = vals.clamp_min(0.0).numpy()
    return idx, dist


class ExactSearch:
    """Exact neighbour search over the fitted points, with pynndescent's ``query`` interface.

    ``UMAP.transform`` asks its search index for the neighbours of new points; this one
    answers with :func:`exact_neighbours`.

    Parameters
    ----------
    data : numpy.ndarray
        (M, D) points the map was fitted on.
    """

    #: Read by ``UMAP.transform`` to choose the search's epsilon, which exact search ignores.
    _angular_trees = False

    def __init__(self, data: np.ndarray) -> None:
        self._data = np.asarray(data, dtype=np.float64)

    def query(self, query: np.ndarray, k: int,
              epsilon: float = 0.1) -> tuple[np.ndarray, np.ndarray]:
        """Return (indices, distances) of the k fitted points nearest to each query point."""
        del epsilon
        return exact_neighbours(query, k, self._data)


def joint_umap(reps: Mapping[str, np.ndarray], n_neighbors: int, min_dist: float,
               max_points: int, seed: int = 0, fit_points: int | None = None,
               n_epochs: int | None = None) -> dict[str, np.ndarray]:
    """One UMAP of all sets together (equal subsample per set, standardised features).

    Parameters
    ----------
    reps : mapping
        Set name → (N_i, D) representations.
    n_neighbors : int
        UMAP ``n_neighbors`` (method: 50); lowered to the number of points − 1 if needed.
    min_dist : float
        UMAP ``min_dist`` (method: 0.1).
    max_points : int
        Total points embedded (split equally between sets).
    seed : int
        Subsampling seed; UMAP's ``random_state`` is 0 as in the method.
    fit_points : int, optional
        Fit the map on at most this many of the points (an equal share of each set's
        points, so every set shapes the map) and place the others with
        ``UMAP.transform``; None fits on all of them.
    n_epochs : int, optional
        Optimisation epochs of the fit (None: umap-learn's default).

    Returns
    -------
    dict of str to numpy.ndarray
        Set name → (n_i, 2) coordinates, in the order of the subsample.
    """
    with warnings.catch_warnings():
        # umap-learn warns at import that TensorFlow (ParametricUMAP) is missing; not used.
        warnings.simplefilter("ignore", ImportWarning)
        import umap

    per = max(2, max_points // max(len(reps), 1))
    rng = np.random.default_rng(seed)
    std = standardise(reps)
    parts, names = [], []
    for name, x in std.items():
        idx = np.sort(rng.choice(len(x), size=min(per, len(x)), replace=False))
        parts.append(x[idx])
        names.append(name)
    allx = np.concatenate(parts)
    fit = np.ones(len(allx), dtype=bool)
    if fit_points is not None and len(allx) > fit_points:
        share = max(2, fit_points // len(parts))
        fit[:] = False
        start = 0
        for p in parts:
            fit[start + rng.choice(len(p), size=min(share, len(p)), replace=False)] = True
            start += len(p)
    fitx = allx[fit]
    nn = int(min(n_neighbors, len(fitx) - 1))
    knn = (*exact_neighbours(fitx, nn), ExactSearch(fitx))
    model = umap.UMAP(n_neighbors=nn, min_dist=min_dist, n_components=2,
                      metric="euclidean", random_state=0, n_jobs=1, n_epochs=n_epochs,
                      precomputed_knn=knn)
    emb = np.empty((len(allx), 2), np.float64)
    with warnings.catch_warnings():
        # "knn_search_index is not an NNDescent object": ExactSearch answers transform.
        warnings.filterwarnings("ignore", message=".*NNDescent object.*")
        emb[fit] = model.fit_transform(fitx)
    if not fit.all():
        emb[~fit] = model.transform(allx[~fit])
    out, start = {}, 0
    for name, p in zip(names, parts, strict=True):
        out[name] = emb[start:start + len(p)]
        start += len(p)
    return out
