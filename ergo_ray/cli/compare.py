"""``ergo-ray compare``: OOD scores and UMAP/KDE between sets, and science figures.

Each ``--set NAME=URL`` is a folder of prepared shards (or Parquet with stored
representations). Writes ``compare.json``, ``summary.json``, ``ood_table.{csv,md}``,
``umap.parquet``, the figures as PNG and ``report.html`` into ``--out``.
"""

from __future__ import annotations

import argparse
import logging
import re
from typing import Any

from ergo_ray.config.schema import RunConfig
from ergo_ray.errors import ConfigError

log = logging.getLogger("ergo_ray")

_NAME = re.compile(r"^[A-Za-z0-9_+-]+$")


class _SetOrOverride(argparse.Action):
    """``--set``: ``NAME=URL`` names a set; ``section.key=value`` overrides the config.

    Every stage takes ``--set KEY=VALUE`` for configuration overrides; ``compare`` also
    takes ``--set NAME=URL`` for its sets (contract.md). A value whose key has a dot, or is
    a top-level configuration key (``seed``, ``preset``), is an override; anything else is
    a set.
    """

    def __call__(self, parser: argparse.ArgumentParser, namespace: argparse.Namespace,
                 values: Any, option_string: str | None = None) -> None:
        key = str(values).split("=", 1)[0].strip()
        dest = "overrides" if ("." in key or key in RunConfig.model_fields) else "sets"
        setattr(namespace, dest, [*(getattr(namespace, dest, None) or []), values])


def add_arguments(parser: argparse.ArgumentParser) -> None:
    """Add the stage's options."""
    parser.add_argument("--model", required=True, metavar="URL", help="model bundle")
    # Replace the common --set (config overrides) by one that also takes NAME=URL sets.
    old = parser._option_string_actions.get("--set")
    if old is not None:
        parser._handle_conflict_resolve(None, [("--set", old)])  # type: ignore[arg-type]
    parser.add_argument("--set", dest="overrides", action=_SetOrOverride, default=[],
                        metavar="NAME=URL | KEY=VALUE",
                        help="a set to compare (repeat for each set), or a configuration "
                             "override such as --set ood.k=8")
    parser.set_defaults(sets=[])
    parser.add_argument("--out", required=True, metavar="DIR", help="output folder")
    parser.add_argument("--observed", default=None, metavar="NAME",
                        help="the observed set: OOD ranking, UMAP panels and science figures")
    parser.add_argument("--ood-max", type=float, default=None, metavar="X",
                        help="science figures use only observed galaxies with OOD score ≤ X")
    parser.add_argument("--split", default="all", choices=("train", "val", "test", "all"),
                        help="rows of each set to use (default: all; the method uses test)")
    parser.add_argument("--limit", type=int, default=None, metavar="N",
                        help="at most N galaxies per set (default: ood.max_per_set)")
    parser.add_argument("--samples", type=int, default=None, metavar="N",
                        help="posterior samples per galaxy (default: evaluate.compare_samples)")
    parser.add_argument("--no-umap", action="store_true", help="skip the joint UMAP")


def parse_sets(items: list[str]) -> dict[str, str]:
    """Parse ``NAME=URL`` options into an ordered mapping.

    Parameters
    ----------
    items : list of str
        The ``--set`` values.

    Returns
    -------
    dict of str to str
        Name → URL, in the given order.

    Raises
    ------
    ConfigError
        For a malformed item, a bad or repeated name, or fewer than two sets.
    """
    out: dict[str, str] = {}
    for item in items:
        name, sep, url = item.partition("=")
        name = name.strip()
        if not sep or not url or not _NAME.match(name):
            msg = f"--set {item!r}: expected NAME=URL with NAME of letters, digits, _ + -"
            raise ConfigError(msg)
        if name in out:
            msg = f"--set: the name {name!r} is given twice"
            raise ConfigError(msg)
        out[name] = url
    if len(out) < 2:
        msg = f"compare needs at least two --set NAME=URL, got {len(out)}"
        raise ConfigError(msg)
    return out


def run(args: argparse.Namespace, cfg: RunConfig) -> int:
    """Compare the sets; write the tables, figures and report."""
    from ergo_ray import load_model
    from ergo_ray.cli.stage import finish
    from ergo_ray.evaluate.comparison import compare_sets, write_comparison
    from ergo_ray.evaluate.inputs import read_set
    from ergo_ray.runtime import driver_threads

    urls = parse_sets(args.sets)
    if args.observed is not None and args.observed not in urls:
        msg = f"--observed {args.observed!r} is not one of the sets {list(urls)}"
        raise ConfigError(msg)
    if args.samples is not None and args.samples < 2:
        msg = f"--samples must be >= 2, got {args.samples}"
        raise ConfigError(msg)
    if args.ood_max is not None and not args.ood_max > 0:
        msg = f"--ood-max must be positive, got {args.ood_max}"
        raise ConfigError(msg)
    limit = args.limit or cfg.ood.max_per_set
    bundle = load_model(args.model, cfg.storage)
    sets = {name: read_set(url, cfg.storage, name=name, split=args.split, limit=limit,
                           seed=cfg.seed) for name, url in urls.items()}
    with driver_threads(cfg.evaluate.threads):
        res = compare_sets(bundle, sets, cfg, observed=args.observed, ood_max=args.ood_max,
                           n_samples=args.samples, use_umap=not args.no_umap)
    names = write_comparison(args.out, res, cfg.storage)
    log.info("compare: OOD table\n%s", res.data["ood_table_markdown"])
    return finish(args, cfg, args.out, "compare: wrote %s", ", ".join(names))
