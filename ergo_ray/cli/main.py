"""Entry point of ``ergo-ray`` and of every script under ``jobs/``.

Each stage lives in ``ergo_ray.cli.<module>`` and defines ``add_arguments(parser)`` and
``run(args, cfg) -> int`` (:mod:`ergo_ray.cli.stage`). Exit status: 0 success, 2 bad
usage/configuration/input (one line, no traceback), 1 failure (naming the failing input).
"""

from __future__ import annotations

import argparse
import importlib
import logging
import sys
from collections.abc import Sequence

from ergo_ray import __version__
from ergo_ray.errors import (
    CheckpointError,
    ConfigError,
    ErgoRayError,
    InputError,
    StorageError,
)

#: stage name → (module under ergo_ray.cli, one-line help)
STAGES: dict[str, tuple[str, str]] = {
    "mock": ("mock", "render a mock HSC-like survey of one domain with known truth"),
    "stamps": ("stamps", "write a PNG grid of example stamps per domain"),
    "ingest-sim": ("ingest_sim", "TNG-format HSC mocks + merger/assembly catalogues -> catalogue"),
    "ingest-survey": ("ingest_survey", "HSC-SSP service cutouts + a user catalogue -> catalogue"),
    "prepare": ("prepare", "raw cutouts -> preprocessed training/inference shards"),
    "match": ("match", "selection-function matching of an observed set to a simulated set"),
    "train-nnclr": ("train_nnclr", "contrastive representation learning on Ray Train"),
    "train-cinn": ("train_cinn", "conditional INN on Ray Train, building the model bundle"),
    "embed": ("embed", "representations of a set -> Parquet"),
    "catalog": ("catalog", "survey-scale posterior catalogue on Ray Data"),
    "validate": ("validate", "accuracy and calibration against truth, figures, report"),
    "compare": ("compare", "OOD scores, UMAP/KDE between sets, science figures"),
    "demo": ("demo", "the main job: everything above on embedded defaults"),
}

log = logging.getLogger("ergo_ray")


class _Parser(argparse.ArgumentParser):
    def error(self, message: str) -> None:  # type: ignore[override]
        self.exit(2, f"{self.prog}: error: {message}\n")


def _common(p: argparse.ArgumentParser) -> None:
    g = p.add_argument_group("configuration")
    g.add_argument("--preset", default=None, choices=("local", "ci", "paper"),
                   help="named configuration preset (default: local)")
    g.add_argument("--config", action="append", default=[], metavar="FILE.yaml",
                   help="YAML configuration file(s), merged in order over the preset")
    g.add_argument("--set", action="append", default=[], metavar="KEY=VALUE", dest="overrides",
                   help="override one configuration key, e.g. --set cinn.epochs=50")
    g.add_argument("-v", "--verbose", action="store_true", help="debug logging")


def build_parser() -> argparse.ArgumentParser:
    """Return the top-level argument parser with one sub-parser per stage."""
    parser = _Parser(prog="ergo-ray", description=__doc__.splitlines()[0])
    parser.add_argument("--version", action="version", version=f"ergo_ray {__version__}")
    sub = parser.add_subparsers(dest="stage", metavar="STAGE", parser_class=_Parser)
    for name, (_module, help_text) in STAGES.items():
        sp = sub.add_parser(name, help=help_text, description=help_text)
        _common(sp)
        sp.set_defaults(_module=_module)
    return parser


def _stage_module(module: str):  # type: ignore[no-untyped-def]
    return importlib.import_module(f"ergo_ray.cli.{module}")


def main(argv: Sequence[str] | None = None) -> int:
    """Run one stage from command-line arguments.

    Parameters
    ----------
    argv : sequence of str, optional
        Arguments after the program name (default: ``sys.argv[1:]``).

    Returns
    -------
    int
        The exit status.
    """
    from ergo_ray.config.loader import load_config
    from ergo_ray.runtime import set_env_defaults

    set_env_defaults()
    argv = list(sys.argv[1:] if argv is None else argv)
    parser = build_parser()
    # Stage-specific options are added only for the chosen stage, so importing one stage
    # never imports the heavy dependencies of the others.
    stage = next((a for a in argv if not a.startswith("-")), None)
    if stage in STAGES:
        sub = parser._subparsers._group_actions[0].choices[stage]  # type: ignore[union-attr]
        _stage_module(STAGES[stage][0]).add_arguments(sub)
    try:
        args = parser.parse_args(argv)
    except SystemExit as exc:
        return int(exc.code or 0)
    if not args.stage:
        parser.print_help(sys.stderr)
        return 2
    # The command line as typed, for provenance (which masks credentials in it).
    args.argv = argv
    logging.basicConfig(
        level=logging.DEBUG if args.verbose else logging.INFO,
        format="%(asctime)s ergo-ray %(levelname)s %(message)s",
        datefmt="%H:%M:%S",
    )
    try:
        preset = args.preset or "local"
        cfg = load_config(preset, args.config, args.overrides)
        return int(_stage_module(args._module).run(args, cfg) or 0)
    except (ConfigError, InputError, StorageError) as err:
        return _fail(2, f"ergo-ray {args.stage}: error: {err}")
    except (CheckpointError, ErgoRayError) as err:
        return _fail(1, f"ergo-ray {args.stage}: failed: {err}")
    except KeyboardInterrupt:
        return _fail(130, f"ergo-ray {args.stage}: interrupted; re-run the same command to resume")


def _fail(status: int, message: str) -> int:
    # One line on stderr, as argparse writes its own usage errors (not through logging: the
    # user sees it even when a host application has configured the root logger).
    sys.stderr.write(message + "\n")
    return status


if __name__ == "__main__":
    sys.exit(main())
