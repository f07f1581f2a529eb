"""Benchmark: exact k-NN OOD scoring of 10^5 x 256 against 10^5 x 256 (method.md §7).

One OOD scoring of a pair (A, B) of n points each costs four exact k-NN searches (k = 8,
L1): A against B (numerator), A against itself (denominator), and the scaling's halves
A0 against A1 and A0 against itself. Three exact methods are timed on the *same* query
rows against the *full* reference sets, in one process, each on the same number of
threads (1, then every core): ergo_ray's scorer
(:func:`ergo_ray.shared.knn.kth_neighbour_distance`, which on the CPU uses faiss's flat
L1 index), brute force in torch (``torch.cdist(p=1)`` + ``topk``, what the scorer does
on a GPU), and the method's original, ``scipy.spatial.cKDTree`` with ``p=1``. The cost of
an exact search is linear in the number of query rows, so the totals are extrapolated
from the timed rows, the same rows for every method. The data are 256-d points on a 16-d
linear manifold plus noise (low intrinsic dimension, which favours the tree).

Run: ``python bench/bench_ood.py [--quick]``.
"""

from __future__ import annotations

import argparse
import os
import time

import numpy as np
import torch
from scipy.spatial import cKDTree

from ergo_ray.shared.knn import kth_neighbour_distance

K = 8


def _data(n: int, d: int, seed: int, shift: float = 0.0) -> np.ndarray:
    rng = np.random.default_rng(seed)
    basis = np.random.default_rng(0).normal(size=(16, d)) / 4.0
    latent = rng.normal(size=(n, 16)) + shift
    return (latent @ basis + 0.1 * rng.normal(size=(n, d))).astype(np.float32)


def _timed(fn) -> tuple[float, object]:  # type: ignore[no-untyped-def]
    t0 = time.perf_counter()
    out = fn()
    return time.perf_counter() - t0, out


def _searches(a: np.ndarray, b: np.ndarray, q_rows: int) -> list[tuple]:
    half = len(a) // 2
    q = a[:q_rows]
    # (queries, reference, exclude_self, rows this search has in the full problem)
    return [(q, b, False, len(a)), (q, a, True, len(a)),
            (q, a[half:], False, half), (q, a[:half], True, half)]


def _total(method: str, searches: list[tuple], threads: int) -> tuple[float, np.ndarray]:
    """Extrapolated seconds of the four searches; k-th distances of the first."""
    torch.set_num_threads(threads)
    total, first = 0.0, None
    for q, ref, excl, rows in searches:
        if method == "cKDTree":
            tb, tree = _timed(lambda ref=ref: cKDTree(ref))
            tq, res = _timed(lambda q=q, tree=tree, excl=excl: tree.query(
                q, k=K + excl, p=1, workers=threads))
            d = np.asarray(res[0])[:, -1]
            total += tb + tq * rows / len(q)
        else:
            backend = "faiss" if method == "faiss" else "torch"
            t, d = _timed(lambda q=q, ref=ref, excl=excl, backend=backend: kth_neighbour_distance(
                q, ref, K, metric="l1", exclude_self=excl, device="cpu", backend=backend))
            total += t * rows / len(q)
        if first is None:
            first = np.asarray(d)
    return total, first  # type: ignore[return-value]


def run(quick: bool) -> list[dict]:
    """Time one pair's OOD scoring with each method (see the module's description).

    Parameters
    ----------
    quick : bool
        5000 points instead of 10^5 (CI smoke run).

    Returns
    -------
    list of dict
        Benchmark rows.
    """
    n, d = (5_000, 256) if quick else (100_000, 256)
    q_rows = 100 if quick else 400
    a = _data(n, d, seed=1)
    b = _data(n, d, seed=2, shift=0.3)
    searches = _searches(a, b, q_rows)
    label = f"{n:.0e}x{d} vs {n:.0e}x{d}".replace("+0", "")
    cores = len(os.sched_getaffinity(0)) if hasattr(os, "sched_getaffinity") else os.cpu_count()
    rows: list[dict] = []
    ref_d = None
    saved = torch.get_num_threads()
    try:
        for threads in sorted({1, int(cores or 1)}):
            times = {}
            for method in ("faiss", "torch", "cKDTree"):
                times[method], dk = _total(method, searches, threads)
                if ref_d is None:
                    ref_d = dk
                elif method != "cKDTree" or threads == 1:
                    err = float(np.max(np.abs(dk - ref_d) / ref_d))
                    if err > 1e-4:
                        msg = f"{method} disagrees with faiss on k-th distances ({err:.2e})"
                        raise RuntimeError(msg)
            best = min(("torch", "cKDTree"), key=times.get)
            rows.append({
                "figure": f"OOD scoring {label}, exact k=8 L1, ergo_ray (faiss IndexFlat L1), "
                          f"{threads} thread(s); extrapolated from {q_rows} query rows",
                "value": times["faiss"], "unit": "s",
                "goal": "fastest exact method", "peer": times[best],
                "ratio": times["faiss"] / times[best],
                "how": f"same rows, same threads; torch.cdist(p=1)+topk {times['torch']:.4g} s, "
                       f"cKDTree p=1 {times['cKDTree']:.4g} s (peer = the faster)",
            })
    finally:
        torch.set_num_threads(saved)
    rows.append({"figure": "k-th neighbour distances, faiss vs torch vs cKDTree",
                 "value": 0.0, "unit": "max rel. diff <= 1e-4 (checked)", "goal": "exact",
                 "peer": None, "ratio": None})
    return rows


def main() -> None:
    p = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    p.add_argument("--quick", action="store_true", help="5000 points instead of 10^5")
    args = p.parse_args()
    for r in run(args.quick):
        peer = "" if r["peer"] is None else f"   peer {r['peer']:.4g} {r['unit']}"
        ratio = "" if r["ratio"] is None else f"   ratio (ours/peer) {r['ratio']:.3f}"
        print(f"{r['figure']}\n    {r['value']:.4g} {r['unit']}{peer}{ratio}   goal: {r['goal']}")


if __name__ == "__main__":
    main()
