"""``ergo-ray train-nnclr``: NNCLR representation learning on Ray Train.

Trains the encoder on the prepared stamps of every domain given (simulations and the
observed survey together), data-parallel over ``--workers`` Ray Train workers, and writes

* ``OUT/nnclr/``: Ray Train's run folder with one checkpoint per epoch (the latest two kept);
* ``OUT/metrics.jsonl``: one line of metrics per epoch (losses, k-NN R², throughput);
* ``OUT/encoder.pt``: the trained encoder (``ergo_ray.train.checkpoint.load_encoder``);
* ``OUT/_meta/``: the resolved configuration and package versions.

Re-running the same command resumes from the last checkpoint and stops at the same total
number of epochs; ``--epochs`` larger than before trains on.
"""

from __future__ import annotations

import argparse
import logging

from ergo_ray.config.schema import RunConfig
from ergo_ray.io import storage as st

log = logging.getLogger("ergo_ray")


def add_arguments(parser: argparse.ArgumentParser) -> None:
    """Add the options of ``train-nnclr`` (the stage protocol: :mod:`ergo_ray.cli.stage`)."""
    parser.add_argument("--data", nargs="+", required=True, metavar="URL",
                        help="prepared shard folders (from prepare), all domains to train on")
    parser.add_argument("--out", required=True, metavar="URL",
                        help="output folder (checkpoints, metrics.jsonl, encoder.pt)")
    parser.add_argument("--workers", type=int, default=None,
                        help="Ray Train workers (default: cluster.workers)")
    parser.add_argument("--gpu", action="store_true", default=None,
                        help="one GPU per worker, mixed precision (default: cluster.use_gpu)")
    parser.add_argument("--epochs", type=int, default=None,
                        help="total epochs (default: clr.epochs)")


def run(args: argparse.Namespace, cfg: RunConfig) -> int:
    """Train NNCLR and export the encoder; return the exit status."""
    from ergo_ray.cli.stage import begin
    from ergo_ray.train.nnclr_stage import check_inputs, fit_nnclr

    st.locate(args.out)
    # Options and inputs are checked before Ray starts (exit status 2, one line).
    inputs = check_inputs(cfg, args.data, workers=args.workers, epochs=args.epochs)
    begin(args, cfg, args.out)
    summary = fit_nnclr(cfg, data=args.data, out=args.out, workers=args.workers,
                        use_gpu=args.gpu, epochs=args.epochs, inputs=inputs)
    m = summary["metrics"]
    log.info("train-nnclr: %d epochs; val loss %.4f; k-NN R² log_mstar %.3f, "
             "true_exsitu_frac %.3f; encoder %s", summary["epochs"],
             m.get("val_loss", float("nan")), m.get("knn_r2_log_mstar", float("nan")),
             m.get("knn_r2_true_exsitu_frac", float("nan")), st.redact(summary["encoder"]))
    return 0
