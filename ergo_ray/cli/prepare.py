"""``ergo-ray prepare``: raw cutouts (FITS or raw shards) → prepared training/inference shards."""

from __future__ import annotations

import argparse
import logging

from ergo_ray.config.schema import RunConfig
from ergo_ray.io import storage as st

log = logging.getLogger("ergo_ray")


def add_arguments(parser: argparse.ArgumentParser) -> None:
    """Add the options of ``prepare`` (the stage protocol: :mod:`ergo_ray.cli.stage`)."""
    parser.add_argument("--in", required=True, dest="in_url", metavar="URL",
                        help="raw input: mock/ingested folder (raw shards, TNG or HSC FITS)")
    parser.add_argument("--out", required=True, metavar="URL", help="output folder URL")
    parser.add_argument("--catalog", default=None, metavar="URL",
                        help="catalogue to join to FITS files (default: IN/catalog if present)")
    parser.add_argument("--overwrite", action="store_true",
                        help="delete a previous prepare run in --out first (default: resume it)")


def run(args: argparse.Namespace, cfg: RunConfig) -> int:
    """Prepare the input on Ray Data; bad galaxies go to ``OUT/errors``, not fatal."""
    from ergo_ray.cli.stage import finish
    from ergo_ray.preprocess.prepare import prepare_survey
    from ergo_ray.runtime import ensure_ray

    ensure_ray(cfg)
    res = prepare_survey(args.in_url, args.out, cfg, args.catalog, overwrite=args.overwrite)
    reasons = ", ".join(f"{k} {v}" for k, v in sorted(res["reasons"].items())) or "none"
    return finish(
        args, cfg, args.out,
        "prepare: %d prepared, %d failed (%s) from %d units%s -> %s (%d files, %d px, %.1f s)",
        res["ok"], res["errors"], reasons, res["units"],
        f" ({res['units_resumed']} resumed)" if res["units_resumed"] else "",
        st.redact(args.out), res["files"], cfg.preprocess.size, res["seconds"],
    )
