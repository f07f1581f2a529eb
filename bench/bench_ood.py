"""Benchmark: exact k-NN OOD scoring of 10^5 × 256 against 10^5 × 256 (method.md §7).

Compares ergo_ray's scorer (:func:`ergo_ray.evaluate.ood.ood_scores`: blocked
``torch.cdist`` + ``topk`` on the model's device) with the method's original,
``scipy.spatial.cKDTree`` with ``p=1``, in the same run and on the same data.

One OOD scoring of a pair (A, B) of n points each costs four exact k-NN searches: A
against B (numerator) and A against itself (denominator), plus the A-A self-scores of the
scaling (the halves A0 against A1 and A0 against itself). On a CPU-only machine the full
10^5 problem takes far longer than a benchmark should, so each method is timed on a random
subset of query rows against the *full* reference sets and the total is extrapolated
(the cost of an exact search is linear in the number of query rows); the rows say so. With
CUDA, or ``--exact-full``, ergo_ray's scorer runs the whole problem. The data are 256-d
points on a 16-d linear manifold plus noise, closer to learned representations (low
intrinsic dimension) than isotropic noise, which favours the tree.

Run: ``python bench/bench_ood.py [--quick] [--exact-full]``.
"""

from __future__ import annotations

import argparse
import time

import numpy as np
import torch
from scipy.spatial import cKDTree

from ergo_ray.evaluate.ood import ood_scores
from ergo_ray.shared.knn import kth_neighbour_distance

K = 8


def _data(n: int, d: int, seed: int, shift: float = 0.0) -> np.ndarray:
    rng = np.random.default_rng(seed)
    basis = np.random.default_rng(0).normal(size=(16, d)) / 4.0
    latent = rng.normal(size=(n, 16)) + shift
    return (latent @ basis + 0.1 * rng.normal(size=(n, d))).astype(np.float32)


def _time(fn) -> tuple[float, object]:  # type: ignore[no-untyped-def]
    t0 = time.perf_counter()
    out = fn()
    return time.perf_counter() - t0, out


def _per_row_torch(q: np.ndarray, ref: np.ndarray, self_ref: bool) -> tuple[float, np.ndarray]:
    t, d = _time(lambda: kth_neighbour_distance(q, ref, K + (1 if self_ref else 0), metric="l1"))
    return t / len(q), np.asarray(d)


def _per_row_tree(q: np.ndarray, ref: np.ndarray, self_ref: bool
                  ) -> tuple[float, float, np.ndarray]:
    tb, tree = _time(lambda: cKDTree(ref))
    kk = K + (1 if self_ref else 0)
    tq, res = _time(lambda: tree.query(q, k=kk, p=1, workers=-1))
    return tq / len(q), tb, np.asarray(res[0])[:, -1]


def run(quick: bool, exact_full: bool = False) -> list[dict]:
    """Time OOD scoring of one pair with both methods.

    Parameters
    ----------
    quick : bool
        5000 points instead of 10^5, fewer timed rows.
    exact_full : bool
        Run ergo_ray's scorer on the whole problem even without CUDA.

    Returns
    -------
    list of dict
        Benchmark rows (see design notes).
    """
    n = 5_000 if quick else 100_000
    d = 256
    q_rows = 400 if quick else 500
    a = _data(n, d, seed=1)
    b = _data(n, d, seed=2, shift=0.3)
    cuda = torch.cuda.is_available()
    half = n // 2
    rows: list[dict] = []

    # ergo_ray: the whole scoring where affordable, else per-row timing on the full refs.
    full = cuda or exact_full or quick
    if full:
        t_ours, res = _time(lambda: ood_scores({"A": a, "B": b}, k=K, metric="l1",
                                               max_per_set=n, seed=0, pairs=[("A", "B")]))
        frac = res.fraction_above(1.0)[("A", "B")]  # type: ignore[attr-defined]
        ours_note = "measured"
    else:
        qa = a[:q_rows]
        t1, _ = _per_row_torch(qa, b, False)
        t2, _ = _per_row_torch(qa, a, True)
        t3, _ = _per_row_torch(a[:q_rows], a[:half], False)
        t4, _ = _per_row_torch(a[:q_rows], a[:half], True)
        t_ours = n * (t1 + t2) + half * (t3 + t4)
        frac = float("nan")
        ours_note = f"extrapolated from {q_rows} query rows"
    # The method's original: cKDTree(p=1), timed per row, trees built on the full refs.
    qa = a[: min(q_rows, 200 if not quick else q_rows)]
    s1, b1, d_tree = _per_row_tree(qa, b, False)
    s2, b2, _ = _per_row_tree(qa, a, True)
    s3, b3, _ = _per_row_tree(qa, a[:half], False)
    s4, b4, _ = _per_row_tree(qa, a[:half], True)
    t_tree = n * (s1 + s2) + half * (s3 + s4) + b1 + b2 + b3 + b4
    # Both are exact: check that the k-th distances agree on the timed rows.
    check = kth_neighbour_distance(qa, b, K, metric="l1")
    agree = float(np.max(np.abs(np.asarray(check) - d_tree) / d_tree))
    label = f"{n:.0e}x{d} vs {n:.0e}x{d}".replace("+0", "")
    device = "cuda" if cuda else f"cpu ({torch.get_num_threads()} threads)"
    rows.append({
        "figure": f"OOD scoring {label}, exact k=8 L1, torch on {device} ({ours_note}); "
                  f"peer cKDTree p=1 workers=-1 (extrapolated from {len(qa)} query rows)",
        "value": float(t_ours),
        "unit": "s",
        "goal": "exact, batched on the device (no Python loop); ratio ours/cKDTree < 1",
        "peer": float(t_tree),
        "ratio": float(t_ours / t_tree),
    })
    rows.append({
        "figure": "k-th neighbour distances, torch vs cKDTree (max relative difference)",
        "value": agree,
        "unit": "",
        "goal": "< 1e-4 (both exact)",
        "peer": None,
        "ratio": None,
    })
    if np.isfinite(frac):
        rows.append({"figure": f"fraction of A above 1 against B (shift 0.3), n={n}",
                     "value": float(frac), "unit": "", "goal": "reported", "peer": None,
                     "ratio": None})
    return rows


def main() -> None:
    p = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    p.add_argument("--quick", action="store_true", help="5000 points instead of 10^5")
    p.add_argument("--exact-full", action="store_true",
                   help="run the whole scoring with torch even without CUDA (slow on CPU)")
    args = p.parse_args()
    for r in run(args.quick, args.exact_full):
        peer = "" if r["peer"] is None else f"   peer {r['peer']:.4g} {r['unit']}"
        ratio = "" if r["ratio"] is None else f"   ratio (ours/peer) {r['ratio']:.3f}"
        print(f"{r['figure']}\n    {r['value']:.4g} {r['unit']}{peer}{ratio}   goal: {r['goal']}")


if __name__ == "__main__":
    main()
