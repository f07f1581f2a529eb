"""``ergo-ray ingest-sim``: TNG-format HSC mocks + TNG catalogues → catalogue with truth."""

from __future__ import annotations

import argparse
import logging

from ergo_ray.config.schema import RunConfig
from ergo_ray.errors import ConfigError

log = logging.getLogger("ergo_ray")


def add_arguments(p: argparse.ArgumentParser) -> None:
    """Add the stage's options."""
    p.add_argument("--images", required=True, metavar="URL",
                   help="folder of shalo_{snap}-{subhalo}_v{0..3}_HSC_GRIZY.fits files")
    p.add_argument("--assembly", required=True, metavar="URL",
                   help="folder of StellarAssembly galaxies_{snap:03d}.hdf5")
    p.add_argument("--mergers", required=True, metavar="URL",
                   help="folder of MergerHistory merger_history_{snap:03d}.hdf5")
    p.add_argument("--snapshots", required=True, metavar="URL",
                   help="snapshot redshift table of the simulation "
                        "(TNG API JSON, or CSV number,redshift)")
    p.add_argument("--sublink", metavar="URL",
                   help="SubLink table with SnapNum, SubfindID, RootDescendantID "
                        "(HDF5, Parquet or CSV)")
    p.add_argument("--domain", required=True,
                   help="domain name written to the catalogue (e.g. tng100)")
    p.add_argument("--out", required=True, metavar="URL", help="output catalogue folder")
    p.add_argument("--min-log-mstar", type=float, default=9.0, help="stellar-mass cut (default 9)")
    p.add_argument("--snap-range", default="72:91", metavar="MIN:MAX",
                   help="snapshots to ingest (default 72:91, z = 0.4-0.1)")


def run(args: argparse.Namespace, cfg: RunConfig) -> int:
    """Ingest and log a one-line summary."""
    from ergo_ray.cli.stage import finish
    from ergo_ray.ingest.sim import SimIngestOptions, run_ingest_sim
    from ergo_ray.runtime import ensure_ray

    try:
        lo, hi = (int(x) for x in args.snap_range.split(":"))
    except ValueError:
        msg = f"--snap-range {args.snap_range!r} must look like MIN:MAX, e.g. 72:91"
        raise ConfigError(msg) from None
    opts = SimIngestOptions(images=args.images, assembly=args.assembly, mergers=args.mergers,
                            snapshots=args.snapshots, sublink=args.sublink, domain=args.domain,
                            out=args.out, min_log_mstar=args.min_log_mstar, snap_min=lo,
                            snap_max=hi)
    ensure_ray(cfg)
    totals = run_ingest_sim(opts, cfg.storage)
    return finish(args, cfg, args.out, "ingest-sim: %d images in the catalogue, %d in "
                  "errors/, %d below log M* %.1f, %d outside snapshots %d-%d", totals["rows"],
                  totals["errors"], totals["selected_out"], args.min_log_mstar,
                  totals["outside_snap_range"], lo, hi)
