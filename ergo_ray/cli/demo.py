"""``ergo-ray demo``: the whole method on the mock universe, with a report."""

from __future__ import annotations

import argparse
import logging
import time

from ergo_ray.config.schema import RunConfig
from ergo_ray.io import storage

log = logging.getLogger("ergo_ray")


def add_arguments(p: argparse.ArgumentParser) -> None:
    """Add the demo's options."""
    p.add_argument("--out", default="demo-out",
                   help="output folder or s3:// URL (default: demo-out)")
    p.add_argument("--n", type=int, default=None,
                   help="galaxies in the reference domain "
                        "(default: mock.n_per_domain of the preset)")


def _common_args(args: argparse.Namespace) -> list[str]:
    common = ["--preset", args.preset or "local"]
    for f in args.config:
        common += ["--config", f]
    for o in args.overrides:
        common += ["--set", o]
    return common


def run(args: argparse.Namespace, cfg: RunConfig) -> int:
    """Run every stage in order, then write ``report.html`` and log the summary table."""
    from ergo_ray.cli.main import main as cli_main
    from ergo_ray.demo.plan import build_plan, run_plan
    from ergo_ray.demo.report import write_report
    from ergo_ray.runtime import ensure_ray

    out = storage.locate(args.out).url
    ensure_ray(cfg)
    t0 = time.perf_counter()
    plan = build_plan(out, cfg, _common_args(args), args.n)
    stages = run_plan(plan, cfg, cli_main)
    summary = write_report(out, stages, cfg)
    log.info("demo finished in %.1f min; report: %s\n%s", (time.perf_counter() - t0) / 60,
             storage.join(out, "report.html"), summary)
    return 0
