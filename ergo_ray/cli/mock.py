"""``ergo-ray mock``: render a mock HSC-like survey of one domain with known truth."""

from __future__ import annotations

import argparse
import logging

from ergo_ray.config.schema import RunConfig
from ergo_ray.io import storage as st
from ergo_ray.types import DOMAINS

log = logging.getLogger("ergo_ray")

FORMATS = ("shards", "hsc-fits", "tng-fits")


def add_look_options(parser: argparse.ArgumentParser) -> None:
    """Add ``--stamp-px`` and ``--mass-mode``, the options of the mock's look (also of ``stamps``).

    Parameters
    ----------
    parser : argparse.ArgumentParser
        The stage's sub-parser.
    """
    parser.add_argument(
        "--stamp-px",
        type=int,
        default=None,
        help="stamp side in pixels (default: mock.stamp_px)",
    )
    parser.add_argument(
        "--mass-mode",
        default=None,
        choices=("balanced", "population"),
        help="stellar-mass sampling (default: mock.mass_mode)",
    )


def add_arguments(parser: argparse.ArgumentParser) -> None:
    """Add the options of ``mock`` (the stage protocol: :mod:`ergo_ray.cli.stage`)."""
    parser.add_argument(
        "--domain", required=True, choices=DOMAINS, help="which mock domain to render"
    )
    parser.add_argument(
        "--n",
        type=int,
        default=None,
        help="number of galaxies (default: mock.n_per_domain)",
    )
    parser.add_argument(
        "--projections",
        type=int,
        default=None,
        help="projections per galaxy, 1..4 (default: mock.projections)",
    )
    parser.add_argument(
        "--seed", type=int, default=None, help="survey seed (default: seed)"
    )
    parser.add_argument(
        "--format",
        default="shards",
        choices=FORMATS,
        dest="fmt",
        help="raw Parquet shards, HSC-SSP cutout FITS, or TNG mock FITS",
    )
    parser.add_argument("--out", required=True, metavar="URL", help="output folder URL")
    add_look_options(parser)
    parser.add_argument(
        "--overwrite",
        action="store_true",
        help="delete a previous mock in --out first (default: resume it)",
    )


def run(args: argparse.Namespace, cfg: RunConfig) -> int:
    """Render the mock survey; exit status 1 if any object failed to render."""
    from ergo_ray.cli.stage import finish
    from ergo_ray.mock.survey import MockSpec, render_survey
    from ergo_ray.runtime import ensure_ray

    spec = MockSpec(
        domain=args.domain,
        n=cfg.mock.n_per_domain if args.n is None else args.n,
        projections=cfg.mock.projections
        if args.projections is None
        else args.projections,
        seed=cfg.seed if args.seed is None else args.seed,
        fmt=args.fmt,
        stamp_px=cfg.mock.stamp_px if args.stamp_px is None else args.stamp_px,
        mass_mode=args.mass_mode or cfg.mock.mass_mode,
        rows_per_file=cfg.mock.rows_per_file,
        galaxies_per_task=cfg.mock.galaxies_per_task,
    )
    spec.check()
    st.locate(args.out)
    ensure_ray(cfg)
    summary = render_survey(spec, args.out, cfg.storage, overwrite=args.overwrite)
    skipped = (
        f", {summary['parts_skipped']} parts resumed"
        if summary["parts_skipped"]
        else ""
    )
    finish(
        args,
        cfg,
        args.out,
        "mock: wrote %d objects (%d galaxies x %d projections, %s, %s) to %s in %.1f s "
        "(%.1f objects/s), %d files, %d errors%s",
        summary["objects"],
        spec.n,
        spec.projections,
        spec.domain,
        spec.fmt,
        st.redact(args.out),
        summary["seconds"],
        summary["objects_per_s"],
        summary["files"],
        summary["errors"],
        skipped,
    )
    for reason in summary["reasons"]:
        log.warning("mock: failed object: %s", reason)
    return 1 if summary["errors"] else 0
