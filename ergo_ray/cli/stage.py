"""What every stage module provides, and the steps the stages share.

A stage is a module ``ergo_ray.cli.<module>`` named in :data:`ergo_ray.cli.main.STAGES`,
with two functions:

``add_arguments(parser: argparse.ArgumentParser) -> None``
    Add the stage's own options to its sub-parser (``--preset``, ``--config``, ``--set``
    and ``-v`` come from :mod:`ergo_ray.cli.main`).
``run(args: argparse.Namespace, cfg: RunConfig) -> int``
    Run the stage with the parsed options and the resolved configuration and return the
    exit status: 0 success, 1 failure. A :class:`~ergo_ray.errors.ConfigError`,
    :class:`~ergo_ray.errors.InputError` or :class:`~ergo_ray.errors.StorageError` raised
    here ends the command with one line and status 2 (``main`` catches it).
    ``args.stage`` is the stage's name and ``args.argv`` the command line as typed.

Every stage records its provenance (``OUT/_meta/``) beside its output: a stage that may
run long or be resumed records it first (:func:`begin`), the others once the output is
complete (:func:`finish`), with the stage's one-line summary.
"""

from __future__ import annotations

import argparse
import logging
from typing import TYPE_CHECKING, Any

from ergo_ray import provenance

if TYPE_CHECKING:
    from ergo_ray.config.schema import RunConfig

__all__ = ["begin", "finish"]

log = logging.getLogger("ergo_ray")


def begin(args: argparse.Namespace, cfg: RunConfig, out: str) -> None:
    """Start (or join) Ray and record the provenance of a stage before it runs.

    Parameters
    ----------
    args : argparse.Namespace
        The stage's options; its name and command line are recorded.
    cfg : RunConfig
        Resolved configuration (``cluster`` says which Ray to start or join).
    out : str
        The folder the stage is about to write.
    """
    from ergo_ray.runtime import ensure_ray

    ensure_ray(cfg)
    provenance.write(out, cfg, args.stage, args.argv)


def finish(args: argparse.Namespace, cfg: RunConfig, out: str, summary: str,
           *values: Any) -> int:
    """Record the provenance of a stage that has written its output, and log its summary.

    Parameters
    ----------
    args : argparse.Namespace
        The stage's options (``stage`` and ``argv`` go into ``OUT/_meta``).
    cfg : RunConfig
        Resolved configuration, recorded beside the output.
    out : str
        The folder the stage wrote.
    summary : str
        The one-line summary, a logging format string for ``values``.
    *values : object
        Its arguments.

    Returns
    -------
    int
        0, the exit status of a finished stage.
    """
    provenance.write(out, cfg, args.stage, args.argv)
    log.info(summary, *values)
    return 0
