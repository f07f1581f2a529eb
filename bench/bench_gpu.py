"""Benchmark: the accelerator path, one short script (``python bench/run.py --gpu``).

Three figures on one CUDA device (on the CPU when there is none: a smoke run, figures not
for quoting), each beside its peer measured in the same run:

1. **Catalogue** end to end (prepared Parquet shards → Ray Data → one model actor holding
   the whole GPU → Parquet parts) with the ``paper`` model (128 px, 12 GLOW blocks, 400
   samples), against the **model-only** rate: the same actor's per-batch work
   (:meth:`~ergo_ray.infer.predictors.PosteriorPredictor.infer`) on images already in
   memory, device-sized batches. Goals: >= 20,000 galaxies/s on one H100, >= 0.8 of
   model-only.
2. **NNCLR** training images/s in one Ray Train worker against the same loop in plain
   PyTorch on the same device, same batch, data in memory (``bench_nnclr``'s
   measurement with the ``paper`` preset on a GPU).
3. **cINN** training samples/s (the ``paper`` architecture on 256-d conditions, the
   training loop :func:`ergo_ray.train.cinn_fit.fit_cinn` on the device).

Sizes are chosen so that the whole script finishes within 10 minutes on one GPU;
``--quick`` shrinks everything to a smoke run of a minute or two on a CPU.

Run: ``python bench/bench_gpu.py [--quick]``.
"""

from __future__ import annotations

import argparse
import os
import shutil
import sys
import tempfile
import time
from pathlib import Path

import numpy as np
import torch

HERE = Path(__file__).resolve().parent
if str(HERE) not in sys.path:
    sys.path.insert(0, str(HERE))


def _device() -> tuple[torch.device, str]:
    if torch.cuda.is_available():
        return torch.device("cuda"), torch.cuda.get_device_name(0)
    return torch.device("cpu"), f"CPU ({os.cpu_count()} cores; no CUDA device: smoke run)"


def catalogue_rows(quick: bool, cuda: bool, name: str) -> list[dict]:
    """End-to-end catalogue vs model-only, ``paper`` model."""
    import bench_catalog as bc
    import ray

    from ergo_ray.config.loader import load_config
    from ergo_ray.infer.pipeline import CatalogOptions, run_catalog

    n = 32 if quick else (200_000 if cuda else 2048)
    batch = 2048 if cuda else (16 if quick else 32)
    cores = os.cpu_count() or 2
    tmp = Path(tempfile.mkdtemp(prefix="bench_gpu_"))
    try:
        n_ref = 200 if quick else 20_000
        paper = load_config("paper", [], [f"cinn.n_ood_reference={n_ref}"])
        bc.write_random_bundle(str(tmp / "paper"), paper)
        bc.write_prepared(tmp / "tp", n, 128, 4096 if cuda else 128)
        model_only, _ = bc.ceiling(str(tmp / "paper"), tmp / "tp", samples=400, batch=batch,
                                   threads=cores, limit=min(n, 16_384 if cuda else 1024))
        bc._init_ray(cores)
        try:
            opts = CatalogOptions(
                model=str(tmp / "paper"), input=str(tmp / "tp"), out=str(tmp / "out"),
                n_samples=400, seed=1, batch_size=batch, gpus_per_actor=1.0 if cuda else 0.0,
                # the rest of the cores for the reader tasks
                cpus_per_actor=max(1.0, cores - 2.0) if cuda else max(1.0, cores - 1.0),
                log_every_s=60,
            )
            t0 = time.perf_counter()
            res = run_catalog(opts)
            e2e = res.rows / (time.perf_counter() - t0)
        finally:
            ray.shutdown()
    finally:
        shutil.rmtree(tmp, ignore_errors=True)
    return [{
        "figure": f"catalogue end to end, paper model, {n:,} prepared galaxies, on {name}",
        "value": e2e, "unit": "galaxies/s",
        "goal": ">= 20,000/s on one H100; >= 0.8 x model-only",
        "peer": model_only, "ratio": e2e / model_only,
        "how": f"one actor, batch {batch}; peer: PosteriorPredictor.infer on in-memory "
               "images, same batch, same device (start-up included on the job's side)",
    }]


def nnclr_rows(quick: bool) -> list[dict]:
    """Ray Train vs plain PyTorch, NNCLR, on the device (``bench_nnclr``'s measurement)."""
    import bench_nnclr as bn

    if quick and not torch.cuda.is_available():
        # the CPU measurement is bench_nnclr's own (``run.py --quick`` runs it)
        return [{"figure": "NNCLR Ray Train vs plain PyTorch on the device", "value": None,
                 "unit": "images/s", "goal": "ratio >= 0.9", "peer": None, "ratio": None,
                 "how": "skipped: no CUDA device (bench_nnclr measures it on the CPU)"}]
    preset = "paper" if torch.cuda.is_available() else "local"
    rows = bn.run(quick=quick, preset=preset)
    return rows[:1]


def cinn_rows(quick: bool, dev: torch.device, name: str) -> list[dict]:
    """cINN training samples/s with the ``paper`` architecture."""
    from ergo_ray.config.loader import load_config
    from ergo_ray.models.cinn import CinnArch
    from ergo_ray.train.cinn_fit import fit_cinn, loop_config

    cfg = load_config("paper")
    n = 1024 if quick else (262_144 if dev.type == "cuda" else 16_384)
    rep = cfg.clr.rep_dim
    arch = CinnArch.from_config(cfg.cinn, rep, init_seed=0)
    epochs = 2
    config = loop_config(cfg, arch, seed=0) | {"epochs": epochs, "patience": 10}
    rng = np.random.default_rng(0)
    x = torch.as_tensor(rng.normal(size=(n, 3)), dtype=torch.float32)
    c = torch.as_tensor(rng.normal(size=(n, rep)), dtype=torch.float32)
    if dev.type == "cuda":
        torch.cuda.synchronize()
    t0 = time.perf_counter()
    fit_cinn((x, c), None, config, device=dev)
    if dev.type == "cuda":
        torch.cuda.synchronize()
    rate = epochs * n / (time.perf_counter() - t0)
    return [{
        "figure": f"cINN training, paper architecture ({arch.n_blocks} blocks, "
                  f"{rep}-d condition, batch {config['batch_size']}), on {name}",
        "value": rate, "unit": "samples/s", "goal": "reported", "peer": None,
        "ratio": None, "how": f"{n:,} rows x {epochs} epochs, data on the device",
    }]


def run(quick: bool) -> list[dict]:
    """Run the three measurements (see the module's description)."""
    dev, name = _device()
    rows = catalogue_rows(quick, dev.type == "cuda", name)
    rows += nnclr_rows(quick)
    rows += cinn_rows(quick, dev, name)
    return rows


def main() -> None:
    p = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    p.add_argument("--quick", action="store_true", help="smoke run")
    args = p.parse_args()
    for r in run(args.quick):
        print(r)


if __name__ == "__main__":
    main()
