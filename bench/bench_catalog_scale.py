"""Benchmark: the catalogue at survey scale (``python bench/bench_catalog.py --scale``).

A million prepared galaxies (random 32 px images, written to a temporary folder, never
committed) through ``ergo-ray catalog`` with a cheap model (the ``ci`` encoder with random
weights, 16 posterior samples), so that the pipeline, not the model, is what is measured:

1. **Rows/s end to end** with 1 and with 2 model actors (1 CPU each), beside the
   **model-only** rate (the actor's per-batch work on in-memory images, one thread, in this
   process, measured in the same run).
2. **CPU per galaxy outside the model**: the CPU time of the whole job's process tree (the
   driver, reader tasks, actors) minus the model's own CPU time per galaxy, per galaxy.
3. **The driver**: its CPU time per row during the job, and the rows/s of the collector
   (grouping rows by unit, de-duplicating, encoding and writing parts) fed as fast as it
   can take them; the number of GPU nodes at 20,000 galaxies/s that one driver can serve.
4. **Memory**: peak PSS of the driver alone and of the whole job (driver + every Ray
   process; PSS so that shared object-store pages count once), at 10^5 and 10^6 galaxies.
5. **Streaming**: the time at which the first part is written, against the job's wall time.

``--quick`` (CI smoke run) uses 2,000 and 8,000 galaxies.
"""

from __future__ import annotations

import os
import shutil
import tempfile
import threading
import time
from pathlib import Path

import numpy as np

os.environ.setdefault("RAY_DATA_DISABLE_PROGRESS_BARS", "1")
os.environ.setdefault("RAY_AUTH_MODE", "disabled")

SIZE = 32
SAMPLES = 16
ROWS_PER_UNIT = 4096
BATCH = 512
#: Galaxies per second of one GPU node that the driver must keep up with (issue #18).
GPU_NODE_RATE = 20_000


def _load_sibling():  # type: ignore[no-untyped-def]
    import importlib.util
    import sys

    spec = importlib.util.spec_from_file_location(
        "bench_catalog", Path(__file__).with_name("bench_catalog.py"))
    module = importlib.util.module_from_spec(spec)  # type: ignore[arg-type]
    sys.modules.setdefault("bench_catalog", module)
    spec.loader.exec_module(module)  # type: ignore[union-attr]
    return module


class PeakPss:
    """Sample the PSS of the driver and of its whole process tree in a thread.

    Reading ``smaps_rollup`` of every Ray process is not free (at a 0.5-s period it took
    about half of the driver's CPU in a 2-actor job), so the sampler keeps to a 2-s period
    and counts its own CPU time (``cpu_s``), which :func:`_job` takes out of the job's.
    """

    def __init__(self, bc, every_s: float = 2.0) -> None:  # type: ignore[no-untyped-def]
        self.bc = bc
        self.every_s = every_s
        self.driver_mb = 0.0
        self.tree_mb = 0.0
        self.cpu_s = 0.0
        self._stop = threading.Event()
        self._t = threading.Thread(target=self._run, daemon=True)

    def _run(self) -> None:
        while not self._stop.is_set():
            self.driver_mb = max(self.driver_mb, self.bc._pss_kb(os.getpid()) / 1024)
            self.tree_mb = max(self.tree_mb, self.bc.tree_pss_mb(os.getpid()))
            self.cpu_s = time.thread_time()
            self._stop.wait(self.every_s)

    def __enter__(self) -> PeakPss:
        self._t.start()
        return self

    def __exit__(self, *exc: object) -> None:
        self._stop.set()
        self._t.join()


def _job(bc, model: str, data: Path, out: Path, actors: int) -> dict:  # type: ignore[no-untyped-def]
    from ergo_ray.infer.pipeline import CatalogOptions, run_catalog

    opts = CatalogOptions(model=model, input=str(data), out=str(out), n_samples=SAMPLES,
                          seed=1, batch_size=BATCH, cpus_per_actor=1.0, actors_min=actors,
                          actors_max=actors, log_every_s=60)
    first: list[float] = []
    c0, d0, t0 = bc.tree_cpu_s(os.getpid()), time.process_time(), time.perf_counter()
    with PeakPss(bc) as mem:
        res = run_catalog(opts, on_write=lambda _k, _r: first or first.append(
            time.perf_counter()))
    wall = time.perf_counter() - t0
    return {"rows": res.rows, "wall": wall,
            "cpu": bc.tree_cpu_s(os.getpid()) - c0 - mem.cpu_s,
            "driver_cpu": time.process_time() - d0 - mem.cpu_s, "first_part": first[0] - t0,
            "driver_mb": mem.driver_mb, "tree_mb": mem.tree_mb}


def collector_rate(n_rows: int = 400_000) -> tuple[float, float]:
    """Rows/s of the driver's collector fed model outputs as fast as it takes them.

    Returns rows per wall second and rows per CPU second of this process (the collector
    and its write threads): the second is what one driver core can sustain.

    Batches of :data:`BATCH` rows, :data:`ROWS_PER_UNIT` rows per unit, real part writes
    (zstd Parquet) to a temporary folder, the catalogue's schema without representations.
    """
    import pyarrow as pa

    from ergo_ray.infer.collector import UnitCollector
    from ergo_ray.infer.manifest import Manifest, WorkUnit
    from ergo_ray.infer.predictors import output_schema
    from ergo_ray.infer.progress import ProgressLog
    from ergo_ray.io.schemas import posterior_schema, posterior_summary_columns

    n_units = n_rows // ROWS_PER_UNIT
    tmp = Path(tempfile.mkdtemp(prefix="bench_collector_"))
    try:
        units = [WorkUnit.make("prepared", f"s{i}", {"url": f"/s{i}"}) for i in range(n_units)]
        manifest = Manifest(str(tmp), units, {"model_id": "bench"})
        manifest.open()
        schema = output_schema(False)
        rng = np.random.default_rng(0)
        batches = []
        for u in units:
            for s in range(0, ROWS_PER_UNIT, BATCH):
                seq = np.arange(s, s + BATCH, dtype=np.int32)
                cols = {c: pa.array(rng.random(BATCH)) for c in posterior_summary_columns()}
                cols.update({
                    "object_id": pa.array([f"{u.key}-{i}" for i in seq]),
                    "root_id": pa.array([f"{u.key}-{i}" for i in seq]),
                    "domain": pa.array(["hsc"] * BATCH), "ood_score": pa.array(rng.random(BATCH)),
                    "n_samples": pa.array(np.full(BATCH, SAMPLES, np.int32)),
                    "status": pa.array(["ok"] * BATCH), "error": pa.nulls(BATCH, pa.string()),
                    "_unit": pa.array([u.key] * BATCH), "_seq": pa.array(seq),
                    "_unit_rows": pa.array(np.full(BATCH, ROWS_PER_UNIT, np.int32)),
                    "_node": pa.array(["node"] * BATCH), "_actor": pa.array(["actor"] * BATCH),
                })
                batches.append(pa.table([cols[f.name] for f in schema], schema=schema))
        col = UnitCollector(manifest, posterior_schema(), ProgressLog(total_units=n_units,
                                                                      every_s=1e9))
        c0, t0 = time.process_time(), time.perf_counter()
        for b in batches:
            col.add(b)
        col.close()
        n = n_units * ROWS_PER_UNIT
        return n / (time.perf_counter() - t0), n / (time.process_time() - c0)
    finally:
        shutil.rmtree(tmp, ignore_errors=True)


def run(quick: bool) -> list[dict]:
    """Run the benchmark; return the rows for ``bench/run.py``."""
    import ray

    from ergo_ray.config.loader import load_config
    from ergo_ray.runtime import set_env_defaults

    set_env_defaults()
    bc = _load_sibling()
    small_n, big_n = (2_000, 8_000) if quick else (100_000, 1_000_000)
    tmp = Path(tempfile.mkdtemp(prefix="bench_scale_"))
    rows: list[dict] = []
    try:
        cfg = load_config("ci", [], [f"preprocess.size={SIZE}", f"infer.n_samples={SAMPLES}"])
        model = str(tmp / "model")
        bc.write_random_bundle(model, cfg)
        bc.write_prepared(tmp / "big", big_n, SIZE, ROWS_PER_UNIT, seed=2)
        bc.write_prepared(tmp / "small", small_n, SIZE, ROWS_PER_UNIT, seed=3)
        bc.write_prepared(tmp / "ceiling", 8 * BATCH, SIZE, ROWS_PER_UNIT, seed=4)
        model_rate, model_cpu_rate = bc.ceiling(model, tmp / "ceiling", samples=SAMPLES,
                                                batch=BATCH, threads=1, limit=8 * BATCH)
        bc._init_ray(4)
        try:
            small = _job(bc, model, tmp / "small", tmp / "out-small", actors=1)
            one = _job(bc, model, tmp / "big", tmp / "out-1", actors=1)
            two = _job(bc, model, tmp / "big", tmp / "out-2", actors=2)
        finally:
            ray.shutdown()
        drv, drv_cpu = collector_rate(20_480 if quick else 409_600)
    finally:
        shutil.rmtree(tmp, ignore_errors=True)
    r1, r2 = one["rows"] / one["wall"], two["rows"] / two["wall"]
    outside_ms = (one["cpu"] / one["rows"] - 1 / model_cpu_rate) * 1e3
    big, sm = f"{big_n:,}", f"{small_n:,}"
    rows += [
        {"figure": f"catalogue end to end, {big} galaxies, 1 actor (1 CPU), cheap model",
         "value": r1, "unit": "galaxies/s", "goal": ">= 0.9 x model-only",
         "peer": model_rate, "ratio": r1 / model_rate},
        {"figure": "same, 2 actors (1 CPU each) vs 1 actor", "value": r2,
         "unit": "galaxies/s", "goal": ">= 1.5 x one actor", "peer": r1, "ratio": r2 / r1},
        {"figure": "CPU per galaxy outside the model (readers, actors' bookkeeping, driver), "
                   "1-actor run", "value": outside_ms, "unit": "ms", "goal": "small",
         "peer": 1e3 / model_cpu_rate, "ratio": outside_ms * model_cpu_rate / 1e3},
        {"figure": "driver CPU per row in the 1-actor job", "value":
         one["driver_cpu"] / one["rows"] * 1e6, "unit": "us/row", "goal": "-",
         "peer": None, "ratio": None},
        {"figure": "driver collector rate (group, de-duplicate, encode and write parts), "
                   f"wall; GPU nodes at {GPU_NODE_RATE:,}/s it serves = ratio",
         "value": drv, "unit": "rows/s", "goal": ">= 320,000 (16 nodes)",
         "peer": GPU_NODE_RATE, "ratio": drv / GPU_NODE_RATE},
        {"figure": "same, per CPU-second of the collector and its write threads",
         "value": drv_cpu, "unit": "rows/CPU-s", "goal": ">= 320,000 (16 nodes)",
         "peer": GPU_NODE_RATE, "ratio": drv_cpu / GPU_NODE_RATE},
        {"figure": f"driver peak PSS, {big} vs {sm} galaxies", "value": one["driver_mb"],
         "unit": "MiB", "goal": "<= 1.2 x", "peer": small["driver_mb"],
         "ratio": one["driver_mb"] / small["driver_mb"]},
        {"figure": f"whole-job peak PSS, {big} vs {sm} galaxies", "value": one["tree_mb"],
         "unit": "MiB", "goal": "bounded", "peer": small["tree_mb"],
         "ratio": one["tree_mb"] / small["tree_mb"]},
        {"figure": f"first part written, s into the {big}-galaxy 1-actor job (peer: job wall)",
         "value": one["first_part"], "unit": "s", "goal": "early", "peer": one["wall"],
         "ratio": one["first_part"] / one["wall"]},
    ]
    return rows


def main() -> None:
    """Print the figures."""
    import argparse

    p = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    p.add_argument("--quick", action="store_true", help="small smoke run")
    args = p.parse_args()
    for r in run(args.quick):
        ratio = f"  ratio {r['ratio']:.3g}" if r.get("ratio") is not None else ""
        peer = f"  (peer {r['peer']:.4g})" if r.get("peer") is not None else ""
        print(f"{r['figure']}: {r['value']:.4g} {r['unit']}{peer}{ratio}  [goal {r['goal']}]")


if __name__ == "__main__":
    main()
