"""Benchmark: batched posterior summaries against the per-galaxy scipy computation.

For N galaxies × S posterior samples × 3 targets, ergo_ray computes every catalogue summary
(mean, median, std, p05/p16/p84/p95, KDE MAP, p_no_major_merger) for the whole batch at
once in torch (:func:`ergo_ray.shared.summaries.summarize`). The peer is the straightforward
per-galaxy loop the method's code uses: numpy moments and quantiles, and
``scipy.stats.gaussian_kde`` (Silverman) on a 512-point grid + ``scipy.signal.find_peaks``
+ ``peak_prominences`` for the MAP (:func:`ergo_ray.shared.summaries.map_reference`), on the
same samples in the same run. The agreement row is the fraction of galaxy-target MAPs that
match the reference within 1 % of the sample range (goal ≥ 99 %).

Samples mimic cINN posteriors: unimodal, skewed and multi-modal ex-situ fractions; merger
targets with a random fraction of no-merger samples (outside the valid ranges).

Run: ``python bench/bench_summaries.py [--quick]``. Two rows, core for core: both sides on
one core (torch one intra-op thread, the scipy loop in this process; CPU seconds of this
process, so other load on the machine does not count), then both on every core (torch that
many threads, the scipy loop split over that many processes; wall-clock seconds). numpy's
and scipy's BLAS run one thread (``OMP_NUM_THREADS=1`` unless set): a 1-thread loop with
BLAS threads idling beside it would be a slower peer than one core allows.
"""

from __future__ import annotations

import argparse
import os
import time

os.environ.setdefault("OMP_NUM_THREADS", "1")
os.environ.setdefault("OPENBLAS_NUM_THREADS", "1")

import numpy as np
import torch

from ergo_ray.models.targets import merger_mask
from ergo_ray.shared.summaries import map_reference, summarize
from ergo_ray.types import TARGETS

N_FULL, N_QUICK, SAMPLES, GRID = 1000, 100, 400, 512


def make_samples(n: int, s: int = SAMPLES, seed: int = 0) -> np.ndarray:
    """Posterior-like samples (N, S, 3) with mixtures and no-merger samples."""
    rng = np.random.default_rng(seed)
    out = np.empty((n, s, 3), np.float32)
    for i in range(n):
        k = rng.integers(1, 4)
        w = rng.dirichlet(np.ones(k))
        comp = rng.choice(k, s, p=w)
        mu = rng.uniform(0.05, 0.9, k)
        sig = rng.uniform(0.02, 0.15, k)
        out[i, :, 0] = np.clip(rng.normal(mu[comp], sig[comp]), 1e-3, 1 - 1e-3)
        out[i, :, 1] = rng.normal(
            rng.uniform(1, 11, k)[comp], rng.uniform(0.3, 2, k)[comp]
        )
        out[i, :, 2] = rng.normal(
            rng.uniform(8, 11, k)[comp], rng.uniform(0.1, 0.5, k)[comp]
        )
        nmm = rng.random(s) < rng.uniform(0, 0.8)
        out[i, nmm, 1], out[i, nmm, 2] = 15.0, 6.0
    return out


def _clock(threads: int) -> float:
    """CPU seconds of this process on one core; wall-clock seconds on several."""
    return time.process_time() if threads <= 1 else time.perf_counter()


def _reference_timed(samples: np.ndarray, procs: int) -> tuple[float, dict]:
    """Seconds of the scipy loop on ``procs`` processes (started before the clock)."""
    if procs <= 1:
        t0 = _clock(1)
        ref = reference(samples)
        return _clock(1) - t0, ref
    from concurrent.futures import ProcessPoolExecutor

    chunks = np.array_split(samples, procs)
    with ProcessPoolExecutor(procs) as pool:
        list(pool.map(reference, [c[:2] for c in chunks]))  # start the workers
        t0 = time.perf_counter()
        parts = list(pool.map(reference, chunks))
        dt = time.perf_counter() - t0
    return dt, {k: np.concatenate([p[k] for p in parts]) for k in parts[0]}


def reference(samples: np.ndarray) -> dict[str, np.ndarray]:
    """The per-galaxy loop: numpy statistics and scipy KDE + peak finding."""
    n = len(samples)
    out = {
        f"{t}_{s}": np.full(n, np.nan)
        for t in TARGETS
        for s in ("map", "mean", "median", "std", "p05", "p16", "p84", "p95")
    }
    out["p_no_major_merger"] = np.empty(n)
    for i in range(n):
        x = samples[i].astype(np.float64)
        merger = merger_mask(x)
        out["p_no_major_merger"][i] = 1.0 - merger.mean()
        for t, name in enumerate(TARGETS):
            v = x[:, t] if t == 0 else x[merger, t]
            if v.size == 0:
                continue
            out[f"{name}_mean"][i] = v.mean()
            out[f"{name}_std"][i] = v.std()
            q = np.quantile(v, [0.05, 0.16, 0.5, 0.84, 0.95])
            for key, val in zip(("p05", "p16", "median", "p84", "p95"), q, strict=True):
                out[f"{name}_{key}"][i] = val
            out[f"{name}_map"][i] = map_reference(v, GRID)
    return out


def run(quick: bool) -> list[dict]:
    """Time both implementations on the same samples.

    Parameters
    ----------
    quick : bool
        100 galaxies instead of 1000.

    Returns
    -------
    list of dict
        Benchmark rows.
    """
    n = N_QUICK if quick else N_FULL
    samples = make_samples(n)
    cores = len(os.sched_getaffinity(0)) if hasattr(os, "sched_getaffinity") else os.cpu_count()
    cores = int(cores or 1)
    saved = torch.get_num_threads()
    timings: dict[int, tuple[float, float]] = {}
    try:
        for threads in sorted({1, cores}):
            torch.set_num_threads(threads)
            summarize(samples[:16], grid=GRID, device="cpu")  # warm-up
            t0 = _clock(threads)
            got = summarize(samples, grid=GRID, device="cpu")
            t_batched = _clock(threads) - t0
            t_ref, ref = _reference_timed(samples, threads)
            timings[threads] = (t_batched, t_ref)
    finally:
        torch.set_num_threads(saved)
    agree, total = 0, 0
    for t, name in enumerate(TARGETS):
        a, b = got[f"{name}_map"], ref[f"{name}_map"]
        x = samples[..., t].astype(np.float64)
        if t:
            m = merger_mask(samples.astype(np.float64))
            x = np.where(m, x, np.nan)
        span = np.nanmax(x, axis=1) - np.nanmin(x, axis=1)
        ok = np.isfinite(b)
        agree += int((np.abs(a[ok] - b[ok]) <= 0.01 * span[ok]).sum())
        total += int(ok.sum())
    stats_ok = all(
        np.allclose(got[c], ref[c], equal_nan=True, atol=1e-5)
        for c in got
        if not c.endswith("_map")
    )
    rows = [
        {
            "figure": f"summaries, batched torch CPU ({n} gal × {SAMPLES} samples × 3), "
                      f"{threads} thread(s)",
            "value": n / tb,
            "unit": "galaxies/s",
            "goal": "≥ 20× per-galaxy scipy, core for core",
            "peer": n / tr,
            "ratio": tr / tb,
            "how": f"torch {threads} intra-op thread(s) vs the scipy loop on {threads} "
                   "process(es) (galaxies split between them), same samples, BLAS 1 thread; "
                   + ("CPU seconds" if threads <= 1 else "wall-clock seconds"),
        }
        for threads, (tb, tr) in sorted(timings.items())
    ] + [
        {
            "figure": "batched MAP within 1 % of range of scipy reference",
            "value": 100.0 * agree / max(total, 1),
            "unit": "% galaxy-targets",
            "goal": "≥ 99 %",
            "peer": None,
            "ratio": None,
        },
        {
            "figure": "moments/quantiles equal to numpy",
            "value": float(stats_ok),
            "unit": "bool",
            "goal": "1",
            "peer": None,
            "ratio": None,
        },
    ]
    if torch.cuda.is_available():
        summarize(samples[:16], grid=GRID, device="cuda")
        torch.cuda.synchronize()
        t0 = time.perf_counter()
        summarize(samples, grid=GRID, device="cuda")
        torch.cuda.synchronize()
        t_gpu = time.perf_counter() - t0
        rows.append(
            {
                "figure": f"summaries, batched torch CUDA ({n} gal)",
                "value": n / t_gpu,
                "unit": "galaxies/s",
                "goal": "",
                "peer": n / t_ref,
                "ratio": t_ref / t_gpu,
            }
        )
    return rows


def main() -> None:
    """Print the benchmark rows."""
    p = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    p.add_argument("--quick", action="store_true", help="100 galaxies (smoke run)")
    args = p.parse_args()
    for r in run(args.quick):
        ratio = f"  ratio {r['ratio']:.1f}×" if r["ratio"] is not None else ""
        peer = f"  (per-galaxy scipy: {r['peer']:.1f} {r['unit']})" if r["peer"] else ""
        print(
            f"{r['figure']}: {r['value']:.1f} {r['unit']}{peer}{ratio}  [goal {r['goal']}]"
        )


if __name__ == "__main__":
    main()
