"""``ergo-ray catalog``: the survey-scale posterior catalogue on Ray Data.

Exactly once and resumable: re-running the same command after an interruption processes
only the input units whose output part is missing (:mod:`ergo_ray.infer.manifest`). Exit
status 0 when the catalogue is complete, also when some galaxies became ``status = error``
rows (the summary line counts them); ``--fail-on-error`` makes such a run exit 1.
"""

from __future__ import annotations

import argparse
import json
import logging

from ergo_ray.config.schema import RunConfig
from ergo_ray.errors import ConfigError
from ergo_ray.io import storage

log = logging.getLogger("ergo_ray")


def _actors(text: str) -> tuple[int, int]:
    try:
        lo, _, hi = text.partition(":")
        a, b = int(lo), int(hi or lo)
    except ValueError:
        msg = f"expected MIN:MAX or N, got {text!r}"
        raise argparse.ArgumentTypeError(msg) from None
    return a, b


def add_arguments(p: argparse.ArgumentParser) -> None:
    """Add the catalogue's options."""
    p.add_argument("--model", required=True, help="model bundle URL (from train-cinn)")
    p.add_argument("--in", dest="input", required=True, metavar="URL",
                   help="prepared shards (from prepare) or raw FITS / raw shards (from mock, "
                        "ingest-*)")
    p.add_argument("--out", required=True, help="catalogue output URL (folder)")
    p.add_argument("--samples", type=int, default=None,
                   help="posterior samples per galaxy (default: infer.n_samples)")
    p.add_argument("--actors", type=_actors, default=None, metavar="MIN:MAX",
                   help="model actor pool size (default: infer.actors_min:infer.actors_max)")
    p.add_argument("--gpus-per-actor", type=float, default=None, metavar="F",
                   help="GPUs per model actor, fractional allowed (default: infer.gpus_per_actor)")
    p.add_argument("--cpus-per-actor", type=float, default=None, metavar="F",
                   help="CPUs per model actor (default: infer.cpus_per_actor)")
    p.add_argument("--batch-size", type=int, default=None,
                   help="galaxies per model call (default: infer.batch_size)")
    p.add_argument("--readers", type=int, default=None, metavar="N",
                   help="reader tasks running at once, each reading one input unit "
                        "(default: infer.readers; 0 or unset: as many as free CPUs allow)")
    p.add_argument("--keep-representation", action="store_true",
                   help="add the 256-d representation column")
    p.add_argument("--format", choices=("parquet", "fits"), default="parquet",
                   help="fits: also write OUT/catalog.fits (FITS binary table)")
    p.add_argument("--merge", action="store_true",
                   help="also write the whole catalogue as one OUT/catalog.parquet")
    p.add_argument("--seed", type=int, default=None, help="posterior seed (default: seed)")
    p.add_argument("--fail-on-error", action="store_true",
                   help="exit 1 when any galaxy ends with status=error")


def run(args: argparse.Namespace, cfg: RunConfig) -> int:
    """Make (or finish) the catalogue; return the exit status."""
    from ergo_ray import provenance
    from ergo_ray.infer.pipeline import CatalogOptions, run_catalog
    from ergo_ray.runtime import ensure_ray

    inf = cfg.infer
    amin, amax = args.actors or (inf.actors_min, inf.actors_max)
    opts = CatalogOptions(
        model=args.model, input=args.input, out=storage.locate(args.out).url,
        n_samples=args.samples if args.samples is not None else inf.n_samples,
        seed=args.seed if args.seed is not None else cfg.seed,
        actors_min=amin, actors_max=amax,
        gpus_per_actor=(args.gpus_per_actor if args.gpus_per_actor is not None
                        else inf.gpus_per_actor),
        cpus_per_actor=(args.cpus_per_actor if args.cpus_per_actor is not None
                        else inf.cpus_per_actor),
        batch_size=args.batch_size if args.batch_size is not None else inf.batch_size,
        keep_representation=args.keep_representation,
        fits=args.format == "fits", merge=args.merge,
        mixed_precision=inf.mixed_precision, log_every_s=inf.log_every_s,
        readers=(args.readers if args.readers is not None else inf.readers) or None,
        wait_for_actors_s=inf.wait_for_actors_s,
    )
    opts.check()
    if storage.locate(opts.out).url == storage.locate(opts.input).url:
        msg = "--out must differ from --in"
        raise ConfigError(msg)
    config_json = json.dumps({"run": cfg.model_dump(mode="json"),
                              "catalog": {"samples": opts.n_samples, "seed": opts.seed,
                                          "keep_representation": opts.keep_representation,
                                          "model": storage.redact(opts.model),
                                          "input": storage.redact(opts.input)}},
                             sort_keys=True)
    result = run_catalog(opts, cfg.storage, config_json,
                         on_start=lambda: provenance.write(opts.out, cfg, "catalog", args.argv),
                         start_ray=lambda: ensure_ray(cfg))
    if result.errors and args.fail_on_error:
        log.error("catalog: %d galaxies have status=error (first: %s)", result.errors,
                  result.first_error)
        return 1
    return 0
