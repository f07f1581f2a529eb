"""Benchmark: NNCLR training throughput on Ray Train against plain PyTorch, and k-NN R².

1. Throughput. The same training steps (:meth:`ergo_ray.train.clr_trainer.ClrTrainer.train_steps`,
   two augmented views, forward, NNCLR loss, backward, Adam) run
   (a) inside one Ray Train worker, fed by its Ray Data shard of the prepared Parquet shards
   (``ergo-ray train-nnclr`` with ``--workers 1``), and
   (b) in plain PyTorch in this process, fed from the same stamps held in memory.
   Images per second per worker are measured over the training steps only (waiting for the
   next batch included, validation and monitor excluded), skipping the first epoch (start-up),
   with the same thread count. Goal: Ray Train costs ≤ 10 % (ratio ≥ 0.9).
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
import logging
import statistics
import tempfile
import time

import numpy as np
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


def _plain_images_per_s(config: dict, images: np.ndarray, epochs: int) -> list[float]:
    trainer = ClrTrainer(config, torch.device("cpu"))
    batches = iterate_batches(images, config["clr"]["batch_size"], seed=0)
    gen = torch.Generator().manual_seed(0)
    out = []
    for _ in range(epochs):
        r = trainer.train_steps(batches, config["clr"]["max_batches_per_epoch"], gen)
        out.append(r["images"] / r["seconds"])
    return out


def _throughput(preset: str, data: list[str] | None, quick: bool, tmp: str) -> list[dict]:
    overrides = ["clr.max_batches_per_epoch=5" if quick else "clr.max_batches_per_epoch=20",
                 "clr.monitor_rows=256"]
    cfg = load_config(preset, overrides=overrides)
    if not data:
        data = write_toy_prepared_shards(st.join(tmp, "toy"), 400 if quick else 1500,
                                         size=cfg.preprocess.size, rows_per_file=256)
    epochs = 3 if quick else 5
    inputs = check_inputs(cfg, data, workers=1, epochs=epochs)
    out = st.join(tmp, "ray-run")
    images = read_split(inputs, split="train", columns=("image",))["image"]
    config = loop_config(cfg, in_size=inputs[0].image_size,
                         preprocess=resolve_preprocess(cfg, inputs), out=out)
    torch.set_num_threads(1)  # as in a Ray worker with a fractional CPU
    # The plain loop runs before and after the Ray run, so that a slow spell of a shared
    # machine does not fall on one side only.
    plain_ips = _plain_images_per_s(config, images, epochs)[1:]
    ensure_ray(cfg)
    t0 = time.perf_counter()
    fit_nnclr(cfg, data=data, out=out, workers=1, epochs=epochs, inputs=inputs)
    wall = time.perf_counter() - t0
    ray_ips = [r["train_images_per_s"] for r in read_metrics(st.join(out, "metrics.jsonl"))][1:]
    plain_ips += _plain_images_per_s(config, images, epochs)[1:]
    ray_v, plain_v = statistics.median(ray_ips), statistics.median(plain_ips)
    size = inputs[0].image_size
    return [{
        "figure": f"NNCLR train images/s per worker, Ray Train 1 worker ({preset}, {size} px, "
                  f"batch {cfg.clr.batch_size}); peer: same loop in plain PyTorch",
        "value": ray_v, "unit": "images/s", "goal": "ratio >= 0.9 (Ray costs <= 10 %)",
        "peer": plain_v, "ratio": ray_v / plain_v,
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
    args = p.parse_args()
    for r in run(args.quick, args.data, args.preset, args.workers):
        ratio = f"  ratio {r['ratio']:.3f}" if r["ratio"] is not None else ""
        peer = f"  peer {r['peer']:.4g}" if r["peer"] is not None else ""
        print(f"{r['figure']}: {r['value']:.4g} {r['unit']}{peer}{ratio}  (goal {r['goal']})")


if __name__ == "__main__":
    main()
