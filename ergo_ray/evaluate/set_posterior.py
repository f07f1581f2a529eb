"""Posterior samples and summaries of a whole evaluation set, for ``validate`` and ``compare``.

:func:`posterior_for_set` asks the bundle's sbi-style
:class:`~ergo_ray.infer.posterior.Posterior` for every galaxy of a set at once: a galaxy
whose representation, observables or samples are not finite costs only itself (it is
named by its ``object_id`` in :attr:`SetPosterior.errors`), never the batch.
:func:`baseline_for_set` does the same for the bundle's (log M*, z) baseline. Samples are
seeded per ``object_id``, so results do not depend on batching.
"""

from __future__ import annotations

import logging
from dataclasses import dataclass, field
from typing import Any

import numpy as np

from ergo_ray.errors import InputError
from ergo_ray.evaluate.inputs import EvalSet
from ergo_ray.io.schemas import posterior_summary_columns
from ergo_ray.models.observables import observable_values

__all__ = ["SetPosterior", "baseline_for_set", "posterior_for_set"]

log = logging.getLogger("ergo_ray")


@dataclass
class SetPosterior:
    """Posterior samples and summaries of the usable rows of a set.

    Attributes
    ----------
    keep : numpy.ndarray
        bool (N,) rows of the set that were sampled (finite condition and samples).
    reps : numpy.ndarray
        float32 (n_keep, D) representations.
    cond : numpy.ndarray
        float32 (n_keep, D + k) conditions of the cINN: the representations and the
        model's observables.
    samples : numpy.ndarray
        float32 (n_keep, S, 3) posterior samples.
    summary : dict
        ``summarize`` columns, (n_keep,) each.
    errors : dict
        object_id → reason, for rows that could not be sampled.
    """

    keep: np.ndarray
    reps: np.ndarray
    cond: np.ndarray
    samples: np.ndarray
    summary: dict[str, np.ndarray]
    errors: dict[str, str] = field(default_factory=dict)


def posterior_for_set(bundle: Any, es: EvalSet, n_samples: int, seed: int) -> SetPosterior:
    """Representations, posterior samples and summaries of every usable row of a set.

    Parameters
    ----------
    bundle : ergo_ray.infer.bundle.ModelBundle
        The model.
    es : EvalSet
        The set (images or stored representations).
    n_samples : int
        Samples per galaxy.
    seed : int
        Run seed, combined with each ``object_id``.

    Returns
    -------
    SetPosterior
        Samples and summaries of the usable rows; rows with a non-finite representation,
        a missing observable (for a model conditioned on one) or non-finite samples are
        dropped and listed in ``errors`` by ``object_id``.

    Raises
    ------
    InputError
        If no row of the set can be sampled.
    """
    reps = es.reps if es.reps is not None else bundle.represent(es.images)
    reps = np.asarray(reps, np.float32)
    post = bundle.posterior_from_representations(
        reps, observables=observable_values(bundle.observables, es.column, len(es)),
        object_ids=[str(o) for o in es.columns["object_id"]])
    samples = post.sample(n_samples, seed)
    keep = post.ok
    reasons = ", ".join(sorted({r.split(":", 1)[0] for r in post.errors.values()}))
    if not keep.any():
        msg = f"{es.name}: no galaxy could be sampled ({len(post.errors)} errors: {reasons})"
        raise InputError(msg, source=es.name)
    if post.errors:
        log.warning("%s: %d galaxies skipped (%s)", es.name, len(post.errors), reasons)
    samples = samples[keep]
    return SetPosterior(keep, reps[keep], post.cond[keep], samples, bundle.summarize(samples),
                        dict(post.errors))


def baseline_for_set(bundle: Any, es: EvalSet, keep: np.ndarray, n_samples: int, seed: int
                     ) -> tuple[np.ndarray, dict[str, np.ndarray]] | None:
    """Posterior samples and summaries of the (log M*, z) baseline for the kept rows.

    Parameters
    ----------
    bundle : ergo_ray.infer.bundle.ModelBundle
        The model.
    es : EvalSet
        The set.
    keep : numpy.ndarray
        bool (N,) rows to sample (:attr:`SetPosterior.keep`).
    n_samples : int
        Samples per galaxy.
    seed : int
        Run seed; the baseline's galaxies are seeded with ``seed + 1`` and their
        ``object_id``.

    Returns
    -------
    tuple or None
        float32 (n_keep, S, 3) samples and their summaries, both NaN for a galaxy without
        a finite mass and redshift or with non-finite samples; None when the bundle has
        no baseline.
    """
    if not getattr(bundle, "has_baseline", False):
        return None
    from ergo_ray.models.cinn import object_seeds

    mass = es.column("log_mstar")[keep]
    z = es.column("redshift")[keep]
    ids = [str(o) for o in es.columns["object_id"][keep]]
    ok = np.isfinite(mass) & np.isfinite(z)
    n = int(keep.sum())
    samples = np.full((n, n_samples, 3), np.nan, np.float32)
    if ok.any():
        raw = np.stack([mass[ok], z[ok]], axis=1)
        cond = np.asarray(bundle.baseline_scaler.forward(raw), np.float32)
        seeds = object_seeds([o for o, g in zip(ids, ok, strict=True) if g], seed + 1)
        # Unchecked: a galaxy whose samples are not finite stays NaN and is not scored.
        samples[ok] = bundle.draw_samples(bundle.baseline, cond, n_samples, seeds)
    finite = np.isfinite(samples).all(axis=(1, 2))
    samples[~finite] = np.nan
    summary = {k: np.full(n, np.nan) for k in posterior_summary_columns()}
    if finite.any():
        for k, v in bundle.summarize(samples[finite]).items():
            summary[k][finite] = v
    return samples, summary
