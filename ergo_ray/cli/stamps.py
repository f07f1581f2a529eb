"""``ergo-ray stamps``: a PNG grid of example mock stamps, one row per domain."""

from __future__ import annotations

import argparse
import logging

from ergo_ray.cli.mock import add_look_options
from ergo_ray.config.schema import RunConfig
from ergo_ray.errors import ConfigError
from ergo_ray.io import storage as st
from ergo_ray.types import DOMAINS

log = logging.getLogger("ergo_ray")


def add_arguments(parser: argparse.ArgumentParser) -> None:
    """Add the options of ``stamps`` (the stage protocol: :mod:`ergo_ray.cli.stage`)."""
    parser.add_argument(
        "--out",
        required=True,
        metavar="URL",
        help="output PNG URL, e.g. DIR/stamps.png",
    )
    parser.add_argument(
        "--n", type=int, default=6, help="galaxies per domain (columns)"
    )
    add_look_options(parser)
    parser.add_argument("--seed", type=int, default=0, help="survey seed")
    parser.add_argument(
        "--domains",
        nargs="+",
        default=list(DOMAINS),
        choices=DOMAINS,
        help="rows of the grid",
    )


def run(args: argparse.Namespace, cfg: RunConfig) -> int:
    """Render the grid and write it with provenance beside it."""
    from ergo_ray.cli.stage import finish
    from ergo_ray.mock.stamps import write_stamp_png

    if not 1 <= args.n <= 64:
        msg = f"--n must be in 1..64, got {args.n}"
        raise ConfigError(msg)
    stamp_px = args.stamp_px or cfg.mock.stamp_px
    if not 16 <= stamp_px <= 512:
        msg = f"--stamp-px must be in 16..512, got {stamp_px}"
        raise ConfigError(msg)
    if not args.out.lower().endswith(".png"):
        msg = f"--out must name a .png file, got {args.out!r}"
        raise ConfigError(msg)
    write_stamp_png(
        args.out,
        n=args.n,
        stamp_px=stamp_px,
        seed=args.seed,
        mass_mode=args.mass_mode or cfg.mock.mass_mode,
        domains=args.domains,
        storage=cfg.storage,
    )
    parent = args.out.rsplit("/", 1)[0] if "/" in args.out else "."
    return finish(
        args,
        cfg,
        parent,
        "wrote %d x %d stamps to %s",
        len(args.domains),
        args.n,
        st.redact(args.out),
    )
