"""``ergo-ray match``: one-to-one selection-function matching of an observed to a simulated set."""

from __future__ import annotations

import argparse
import logging

from ergo_ray.config.schema import RunConfig
from ergo_ray.io import storage as st

log = logging.getLogger("ergo_ray")


def add_arguments(parser: argparse.ArgumentParser) -> None:
    """Add the options of ``match`` (the stage protocol: :mod:`ergo_ray.cli.stage`)."""
    parser.add_argument("--observed", required=True, metavar="URL",
                        help="observed set (prepared folder or catalogue with r90_px, i_mag)")
    parser.add_argument("--simulated", required=True, metavar="URL",
                        help="simulated set, visited in random order (match.seed)")
    parser.add_argument("--out", required=True, metavar="URL", help="output folder URL")


def run(args: argparse.Namespace, cfg: RunConfig) -> int:
    """Match the sets, write ``OUT/pairs/`` and ``OUT/summary.json``."""
    from ergo_ray.cli.stage import finish
    from ergo_ray.preprocess.match_job import match_folders

    res = match_folders(args.observed, args.simulated, args.out, cfg)
    return finish(
        args, cfg, args.out,
        "match: %d pairs from %d observed (%d usable) and %d simulated (%d usable) "
        "in |dz|<=%g, |di|<=%g, |dR90|<=%g px -> %s (%.1f s)",
        res["pairs"], res["observed"], res["observed_valid"], res["simulated"],
        res["simulated_valid"], cfg.match.dz, cfg.match.dmag, cfg.match.dr90_px,
        st.redact(args.out), res["seconds"],
    )
