"""``ergo-ray embed``: the representations of a prepared set, as Parquet.

Output: ``OUT/*.parquet`` with every catalogue column of the input (``object_id``,
``root_id``, ``domain``, ...; not the stamp) and ``representation``, a
``fixed_size_list<float32>[256]``, computed with the model bundle's encoder on a Ray Data
actor pool; ``OUT/_meta`` records the configuration and the bundle's ``model_id``.
"""

from __future__ import annotations

import argparse
import logging

from ergo_ray.config.schema import RunConfig
from ergo_ray.io import storage

log = logging.getLogger("ergo_ray")


def add_arguments(p: argparse.ArgumentParser) -> None:
    """Add the stage's options."""
    p.add_argument("--model", required=True, metavar="URL", help="model bundle URL")
    p.add_argument(
        "--in",
        dest="input",
        required=True,
        metavar="URL",
        help="prepared shard folder (from prepare)",
    )
    p.add_argument("--out", required=True, metavar="URL", help="output folder")
    p.add_argument(
        "--gpus-per-actor",
        type=float,
        default=None,
        metavar="F",
        help="GPUs per actor (default: infer.gpus_per_actor)",
    )


def run(args: argparse.Namespace, cfg: RunConfig) -> int:
    """Embed the set; return the exit status."""
    from ergo_ray.cli.stage import begin
    from ergo_ray.shared.embedding import embed_set

    begin(args, cfg, args.out)
    n, model_id = embed_set(
        args.model, args.input, args.out, cfg, gpus_per_actor=args.gpus_per_actor
    )
    log.info(
        "embed: %d representations (model %s) written to %s",
        n,
        model_id,
        storage.redact(args.out),
    )
    return 0
