"""``ergo-ray validate``: accuracy and calibration of a model bundle against truth.

Reads prepared shards (or Parquet with stored representations), samples the posteriors,
and writes ``metrics.json``, ``summary.json``, ``report.html`` (figures embedded), the
figures as PNG, ``mass_bins.csv`` and ``predictions.parquet`` into ``--out``.
"""

from __future__ import annotations

import argparse
import logging

from ergo_ray.config.schema import RunConfig
from ergo_ray.errors import ConfigError
from ergo_ray.io import storage as st

log = logging.getLogger("ergo_ray")


def add_arguments(parser: argparse.ArgumentParser) -> None:
    """Add the stage's options."""
    parser.add_argument("--model", required=True, metavar="URL", help="model bundle")
    parser.add_argument("--in", dest="inputs", nargs="+", required=True, metavar="URL",
                        help="prepared shards (one or more folders) with truth columns")
    parser.add_argument("--out", required=True, metavar="DIR", help="output folder")
    parser.add_argument("--truth", default=None, metavar="URL",
                        help="separate truth table (object_id + true_*), joined on object_id")
    parser.add_argument("--split", default="test", choices=("train", "val", "test", "all"),
                        help="rows to validate on (default: test)")
    parser.add_argument("--samples", type=int, default=None, metavar="N",
                        help="posterior samples per galaxy (default: infer.n_samples)")
    parser.add_argument("--limit", type=int, default=None, metavar="N",
                        help="validate on at most N galaxies, drawn at random (seeded)")
    parser.add_argument("--seed", type=int, default=None, help="run seed (default: cfg.seed)")


def run(args: argparse.Namespace, cfg: RunConfig) -> int:
    """Validate the model against the set's truth; write the outputs and report."""
    from ergo_ray import load_model
    from ergo_ray.cli.stage import finish
    from ergo_ray.evaluate.inputs import join_truth, read_set, read_truth
    from ergo_ray.evaluate.validation import validate_set
    from ergo_ray.evaluate.validation_output import write_validation
    from ergo_ray.runtime import driver_threads

    n_samples = args.samples or cfg.infer.n_samples
    if n_samples < 2:
        msg = f"--samples must be at least 2, got {n_samples}"
        raise ConfigError(msg)
    if args.limit is not None and args.limit < 1:
        msg = f"--limit must be positive, got {args.limit}"
        raise ConfigError(msg)
    seed = cfg.seed if args.seed is None else args.seed
    bundle = load_model(args.model, cfg.storage)
    es = read_set(args.inputs, cfg.storage, name=", ".join(st.redact(u) for u in args.inputs),
                  split=args.split, limit=args.limit, seed=seed)
    if args.truth:
        found = join_truth(es, read_truth(args.truth, cfg.storage))
        log.info("joined truth for %d of %d galaxies from %s", found, len(es),
                 st.redact(args.truth))
    with driver_threads(cfg.evaluate.threads):
        res = validate_set(bundle, es, n_samples, seed, tuple(cfg.evaluate.mass_bins))
    names = write_validation(args.out, res, cfg.storage)
    s = res.summary
    return finish(args, cfg, args.out, "validate: %d galaxies; ex-situ within 0.1: %s; "
                  "outputs: %s", s["n_objects"], s["exsitu_frac_within_0.1"], ", ".join(names))
