"""``ergo-ray train-cinn``: the conditional INN on Ray Train, written as a model bundle.

Embeds the simulated domains' prepared stamps with the frozen NNCLR encoder (a Ray Data
job), trains the cINN (and, with ``--baseline``, the same network conditioned on
(log M*, z) only) with Ray Train, and writes the model bundle to ``--out``. Re-running the
same command resumes: representations and the latest per-epoch checkpoints are reused.
"""

from __future__ import annotations

import argparse
import logging

from ergo_ray.config.schema import RunConfig
from ergo_ray.io import storage

log = logging.getLogger("ergo_ray")


def add_arguments(p: argparse.ArgumentParser) -> None:
    """Add the stage's options."""
    p.add_argument(
        "--data",
        nargs="+",
        required=True,
        metavar="URL",
        help="prepared shard folders (from prepare); those with truth are used",
    )
    p.add_argument(
        "--encoder",
        required=True,
        metavar="URL",
        help="train-nnclr output folder (or its encoder.pt)",
    )
    p.add_argument("--out", required=True, metavar="URL", help="model bundle folder")
    p.add_argument(
        "--workers",
        type=int,
        default=None,
        help="Ray Train workers (default: cluster.workers)",
    )
    p.add_argument(
        "--gpu",
        action="store_true",
        default=None,
        help="train and embed on GPUs (default: cluster.use_gpu)",
    )
    p.add_argument(
        "--baseline",
        action="store_true",
        help="also train the baseline cINN conditioned on (log_mstar, redshift)",
    )


def run(args: argparse.Namespace, cfg: RunConfig) -> int:
    """Train and write the bundle; return the exit status."""
    from ergo_ray.cli.stage import begin
    from ergo_ray.train.cinn_stage import check_options, train_cinn

    check_options(args.workers)
    begin(args, cfg, args.out)
    model_id = train_cinn(
        args.data,
        args.encoder,
        args.out,
        cfg,
        workers=args.workers,
        use_gpu=args.gpu,
        baseline=args.baseline,
    )
    if cfg.cinn.widening.enabled:
        from ergo_ray.evaluate.widening_fit import add_widening

        model_id = add_widening(args.out, args.data, cfg)
    log.info(
        "train-cinn: model bundle %s written to %s", model_id, storage.redact(args.out)
    )
    return 0
