"""Benchmark: NNCLR training throughput on Ray Train against plain PyTorch, and k-NN R².

1. Throughput. The same training steps (:meth:`ergo_ray.train.clr_trainer.ClrTrainer.train_steps`,
   two augmented views, forward, NNCLR loss, backward, Adam) run
   (a) inside one Ray Train worker, fed by its Ray Data shard of the prepared Parquet shards
   (``ergo-ray train-nnclr`` with ``--workers 1``), and
   (b) in plain PyTorch (no Ray), fed from the same stamps held in memory
   (:func:`ergo_ray.train.data.iterate_batches`, same batch size).
   Images per second per worker are measured over the training steps only (waiting for the
   next batch included, validation and monitor excluded), skipping the first epoch
   (start-up); so are images per CPU second of the whole process (every thread, the data
   feed's included), the figure that a shared machine's load disturbs least.
   Goal: Ray Train costs ≤ 10 % (ratio ≥ 0.9).

   The plain peer runs as a Ray Train worker does, so that the ratio is Ray's own cost:
   in a fresh process (no Ray driver beside it), started with ``OMP_NUM_THREADS`` as a local
   Ray instance's workers get it (1: one intra-op thread) before torch loads, at Ray's
   worker niceness (15), with the training loop in a thread of its own, as in Ray Train's
   ``TrainingThread``. The last point is why the plain loop of earlier versions (run in
   this process's main thread) was ~10 % slower than the Ray worker (2026-12-05, CPU time
   per image over 10-step epochs, 2-core machine): glibc's ``malloc`` gave the main thread
   back to the kernel the memory each step's activations freed, so every step faulted
   ~20,000 fresh pages in again (11,000–21,000 minor faults per 128-image step; 2.10–2.32
   CPU ms per image, 0.25–0.49 of it in the kernel). With the loop in a thread of its own,
   glibc keeps the pages of that thread's arena: 800–3,400 faults per step and 1.98–2.02
   ms per image, as inside the Ray worker (4,500–9,800 faults, 1.98–2.13 ms in its
   training thread). Switching the trimming off in the main thread
   (``MALLOC_TRIM_THRESHOLD_``/``MALLOC_MMAP_THRESHOLD_``) removes the faults too but is
   no faster (2.03–2.11 ms), so the thread is the plain loop at its best. Neither the
   OpenMP set-up (``OMP_NUM_THREADS=1`` before torch loads or ``torch.set_num_threads(1)``
   after: 2.19–2.23 and 2.10–2.32 ms) nor a batch-prefetching thread (2.25–2.29 ms in the main
   thread; beside a training thread it brought the faults back, 2.14–2.20 ms) was the
   cause.
2. Representation quality (only with ``--data``, real prepared mock shards of ≥ 10,000
   images, e.g. tng100 + tng50 + hsc): the full ``local`` preset training, then the k-NN R²
   on the validation split for ``log_mstar`` (goal ≥ 0.8) and ``true_exsitu_frac``
   (reported), and the wall time.

Without ``--data`` the throughput part runs on toy prepared shards
(:func:`ergo_ray.mock.toy.write_toy_prepared_shards`) at the local preset's stamp size.

Run: ``python bench/bench_nnclr.py [--quick] [--data URL ...] [--preset local]``.
"""

from __future__ import annotations

import argparse
import json
import logging
import os
import statistics
import subprocess
import sys
import tempfile
import threading
import time

import torch

from ergo_ray.config.loader import load_config
from ergo_ray.io import storage as st
from ergo_ray.mock.toy import write_toy_prepared_shards
from ergo_ray.runtime import ensure_ray, set_env_defaults
from ergo_ray.train.checkpoint import read_metrics
from ergo_ray.train.clr_loop import loop_config
from ergo_ray.train.clr_trainer import ClrTrainer
from ergo_ray.train.data import iterate_batches, read_split
from ergo_ray.train.nnclr_stage import check_inputs, fit_nnclr, resolve_preprocess

#: Ray starts its worker processes at this niceness (Ray's ``worker_niceness`` default).
RAY_WORKER_NICENESS = 15


def _plain_epochs(spec: dict) -> list[dict]:
    """The plain-PyTorch peer (run in its own process by :func:`_plain_peer`)."""
    os.nice(max(0, RAY_WORKER_NICENESS - os.nice(0)))
    cfg = load_config(spec["preset"], overrides=spec["overrides"])
    inputs = check_inputs(cfg, spec["data"], workers=1, epochs=spec["epochs"])
    images = read_split(inputs, split="train", columns=("image",))["image"]
    config = loop_config(cfg, in_size=inputs[0].image_size,
                         preprocess=resolve_preprocess(cfg, inputs), out=spec["out"])
    out: list[dict] = []
    failed: list[BaseException] = []

    def loop() -> None:
        try:
            trainer = ClrTrainer(config, torch.device(spec["device"]))
            batches = iterate_batches(images, config["clr"]["batch_size"], seed=0)
            gen = torch.Generator(device=spec["device"]).manual_seed(0)
            for _ in range(spec["epochs"]):
                r = trainer.train_steps(batches, config["clr"]["max_batches_per_epoch"], gen)
                out.append({"ips": r["images"] / r["seconds"],
                            "ips_cpu": r["images"] / r["cpu_seconds"],
                            "threads": torch.get_num_threads()})
        except BaseException as err:  # re-raised in the main thread below
            failed.append(err)

    t = threading.Thread(target=loop, name="TrainingThread")
    t.start()
    t.join()
    if failed:
        raise failed[0]
    return out


def _plain_peer(spec: dict) -> list[dict]:
    """Run :func:`_plain_epochs` in a fresh process with a Ray worker's thread settings.

    A local Ray instance's workers inherit this process's environment, where
    :func:`~ergo_ray.runtime.set_env_defaults` has put ``OMP_NUM_THREADS`` (1 unless set).
    """
    env = dict(os.environ)
    threads = int(env["OMP_NUM_THREADS"])
    proc = subprocess.run([sys.executable, __file__, "--plain-peer", json.dumps(spec)],
                          env=env, capture_output=True, text=True, check=False)
    if proc.returncode != 0:
        raise RuntimeError(f"the plain-PyTorch peer failed:\n{proc.stderr[-4000:]}")
    epochs = json.loads(proc.stdout.strip().splitlines()[-1])
    if any(e["threads"] != threads for e in epochs):
        msg = f"the plain-PyTorch peer ran with {epochs[0]['threads']} threads, not {threads}"
        raise RuntimeError(msg)
    return epochs[1:]  # the first epoch is start-up


def _throughput(preset: str, data: list[str] | None, quick: bool, tmp: str) -> list[dict]:
    overrides = ["clr.max_batches_per_epoch=5" if quick else "clr.max_batches_per_epoch=20",
                 "clr.monitor_rows=256"]
    cfg = load_config(preset, overrides=overrides)
    if not data:
        data = write_toy_prepared_shards(st.join(tmp, "toy"), 400 if quick else 1500,
                                         size=cfg.preprocess.size, rows_per_file=256)
    epochs = 2 if quick else 5
    inputs = check_inputs(cfg, data, workers=1, epochs=epochs)
    out = st.join(tmp, "ray-run")
    gpu = cfg.cluster.use_gpu and torch.cuda.is_available()
    spec = {"preset": preset, "overrides": overrides, "data": data, "epochs": epochs,
            "out": st.join(tmp, "plain-run"), "device": "cuda" if gpu else "cpu"}
    # The plain loop runs before and after the Ray run, so that a slow spell of a shared
    # machine does not fall on one side only (after it only in the smoke run).
    plain = [] if quick else _plain_peer(spec)
    ensure_ray(cfg)
    t0 = time.perf_counter()
    fit_nnclr(cfg, data=data, out=out, workers=1, use_gpu=gpu, epochs=epochs, inputs=inputs)
    wall = time.perf_counter() - t0
    metrics = read_metrics(st.join(out, "metrics.jsonl"))[1:]
    plain += _plain_peer(spec)
    ray_v = statistics.median(r["train_images_per_s"] for r in metrics)
    plain_v = statistics.median(r["ips"] for r in plain)
    ray_c = statistics.median(r["train_images_per_cpu_s"] for r in metrics)
    plain_c = statistics.median(r["ips_cpu"] for r in plain)
    size = inputs[0].image_size
    return [{
        "figure": f"NNCLR train images/s per worker, Ray Train 1 worker ({preset}, {size} px, "
                  f"batch {cfg.clr.batch_size}); peer: same loop in plain PyTorch, "
                  f"{os.environ['OMP_NUM_THREADS']} thread(s), {spec['device']}",
        "value": ray_v, "unit": "images/s", "goal": "ratio >= 0.9 (Ray costs <= 10 %)",
        "peer": plain_v, "ratio": ray_v / plain_v,
    }, {
        "figure": "the same, images per CPU second of the training process (all threads)",
        "value": ray_c, "unit": "images/CPU-s", "goal": "ratio >= 0.9",
        "peer": plain_c, "ratio": ray_c / plain_c,
    }, {
        "figure": f"Ray Train run wall time, {epochs} epochs × "
                  f"{cfg.clr.max_batches_per_epoch} batches incl. start-up and monitor",
        "value": wall, "unit": "s", "goal": "reported", "peer": None, "ratio": None,
    }]


def _quality(preset: str, data: list[str], workers: int, tmp: str) -> list[dict]:
    cfg = load_config(preset)
    inputs = check_inputs(cfg, data, workers=workers)
    ensure_ray(cfg)
    out = st.join(tmp, "quality-run")
    t0 = time.perf_counter()
    summary = fit_nnclr(cfg, data=data, out=out, workers=workers, inputs=inputs)
    wall = time.perf_counter() - t0
    m = summary["metrics"]
    n_train = len(read_split(inputs, split="train", columns=("log_mstar",))["log_mstar"])
    return [{
        "figure": f"k-NN R² log_mstar on val after {preset} NNCLR ({n_train} train images)",
        "value": m["knn_r2_log_mstar"], "unit": "R²", "goal": ">= 0.8", "peer": None,
        "ratio": None,
    }, {
        "figure": "k-NN R² true_exsitu_frac on val", "value": m["knn_r2_true_exsitu_frac"],
        "unit": "R²", "goal": "reported", "peer": None, "ratio": None,
    }, {
        "figure": f"NNCLR {preset} training wall time ({summary['epochs']} epochs, "
                  f"{workers} worker(s))",
        "value": wall, "unit": "s", "goal": "a few minutes on 2 cores", "peer": None,
        "ratio": None,
    }]


def run(quick: bool, data: list[str] | None = None, preset: str = "local",
        workers: int = 1) -> list[dict]:
    """Measure training throughput (always) and k-NN R² (with ``data``).

    Parameters
    ----------
    quick : bool
        Fewer, smaller batches per epoch and a smaller toy set (smoke run).
    data : list of str, optional
        Prepared-shard folders of the mock survey; enables the R² part.
    preset : str
        Configuration preset.
    workers : int
        Ray Train workers of the R² run.

    Returns
    -------
    list of dict
        Benchmark rows.
    """
    import ray

    set_env_defaults()
    logging.getLogger("ergo_ray").setLevel(logging.WARNING)
    started = ray.is_initialized()
    with tempfile.TemporaryDirectory() as tmp:
        try:
            rows = _throughput(preset, data, quick, tmp)
            if data:
                rows += _quality(preset, data, workers, tmp)
        finally:
            if not started and ray.is_initialized():
                ray.shutdown()
    return rows


def main() -> None:
    p = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    p.add_argument("--quick", action="store_true")
    p.add_argument("--data", nargs="+", default=None, metavar="URL",
                   help="prepared mock shards (enables the k-NN R² part)")
    p.add_argument("--preset", default="local")
    p.add_argument("--workers", type=int, default=1)
    p.add_argument("--plain-peer", default=None, help=argparse.SUPPRESS)
    args = p.parse_args()
    if args.plain_peer is not None:
        print(json.dumps(_plain_epochs(json.loads(args.plain_peer))))
        return
    for r in run(args.quick, args.data, args.preset, args.workers):
        ratio = f"  ratio {r['ratio']:.3f}" if r["ratio"] is not None else ""
        peer = f"  peer {r['peer']:.4g}" if r["peer"] is not None else ""
        print(f"{r['figure']}: {r['value']:.4g} {r['unit']}{peer}{ratio}  (goal {r['goal']})")


if __name__ == "__main__":
    main()
