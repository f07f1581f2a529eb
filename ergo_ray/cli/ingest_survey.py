"""``ergo-ray ingest-survey``: HSC-SSP service cutouts + a user catalogue → catalogue."""

from __future__ import annotations

import argparse
import logging

from ergo_ray.config.schema import RunConfig

log = logging.getLogger("ergo_ray")


def add_arguments(p: argparse.ArgumentParser) -> None:
    """Add the stage's options."""
    p.add_argument("--cutouts", required=True, metavar="URL",
                   help="folder of {lineno}-cutout-HSC-{G,R,I}-{tract}-{rerun}.fits files")
    p.add_argument("--catalog", required=True, metavar="URL",
                   help="user catalogue (CSV, FITS table or Parquet) with ra, dec, redshift")
    p.add_argument("--domain", default="hsc", help="domain name of the survey (default hsc)")
    p.add_argument("--out", required=True, metavar="URL", help="output catalogue folder")


def run(args: argparse.Namespace, cfg: RunConfig) -> int:
    """Ingest and log a one-line summary."""
    from ergo_ray.cli.stage import finish
    from ergo_ray.ingest.survey import SurveyIngestOptions, run_ingest_survey
    from ergo_ray.runtime import ensure_ray

    ensure_ray(cfg)
    opts = SurveyIngestOptions(cutouts=args.cutouts, catalog=args.catalog, domain=args.domain,
                               out=args.out)
    totals = run_ingest_survey(opts, cfg.storage)
    return finish(args, cfg, args.out, "ingest-survey: %d galaxies in the catalogue, %d in "
                  "errors/", totals["rows"], totals["errors"])
