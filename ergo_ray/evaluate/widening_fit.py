"""Fit the shift-aware widening (``cinn.widening``) of a freshly trained model bundle.

The data are simulated galaxies with known truth that the cINN did not train on: every row
of the ``cinn.widening.domains`` among ``train-cinn``'s inputs (a seeded subsample of at most
``max_rows`` per input), plus the validation split of ``cinn.domains``, which anchors the
factor near 1 in domain. An input without truth columns (an observed survey) is never read
here; the configuration refuses ``hsc`` as a widening domain.

It sits above ``train`` and ``infer`` (it samples a trained bundle as ``validate`` does):
``ergo-ray train-cinn`` calls :func:`add_widening` once :func:`ergo_ray.train.cinn_stage.
train_cinn` has written the bundle.
"""

from __future__ import annotations

import logging
from collections.abc import Sequence
from dataclasses import replace
from typing import TYPE_CHECKING

import numpy as np

from ergo_ray.errors import InputError
from ergo_ray.evaluate.inputs import EvalSet, read_set
from ergo_ray.io import storage as st
from ergo_ray.io.schemas import TRUTH_COLUMNS
from ergo_ray.models.targets import encode_truth
from ergo_ray.models.widening import OodWidening

if TYPE_CHECKING:
    from ergo_ray.config.schema import RunConfig
    from ergo_ray.infer.bundle import ModelBundle
    from ergo_ray.io.prepared import PreparedInput

__all__ = ["calibration_sets", "fit_widening"]

log = logging.getLogger("ergo_ray")


def _subset(es: EvalSet, mask: np.ndarray) -> EvalSet:
    return replace(
        es,
        columns={k: v[mask] for k, v in es.columns.items()},
        images=None if es.images is None else es.images[mask],
        reps=None if es.reps is None else es.reps[mask],
    )


def calibration_sets(inputs: Sequence[PreparedInput], cfg: RunConfig) -> list[EvalSet]:
    """Read the rows the widening is fitted on.

    Parameters
    ----------
    inputs : sequence of PreparedInput
        ``train-cinn``'s inputs that carry truth columns.
    cfg : RunConfig
        ``cinn.domains``, ``cinn.widening``, ``storage``, ``seed``.

    Returns
    -------
    list of EvalSet
        Non-empty sets: widening-domain rows and validation rows of the training domains.
    """
    wc = cfg.cinn.widening
    out: list[EvalSet] = []
    for p in inputs:
        if "true_exsitu_frac" not in p.columns:  # an observed survey: never read
            continue
        small = read_set(p.url, cfg.storage, split="all", need_pixels=False)
        dom = np.asarray(
            small.columns.get("domain", np.array([], object)), dtype=object
        )
        if np.isin(dom, list(wc.domains)).any():
            es = read_set(
                p.url, cfg.storage, split="all", limit=wc.max_rows, seed=cfg.seed
            )
            es = _subset(
                es, np.isin(np.asarray(es.columns["domain"], object), list(wc.domains))
            )
            out.append(es)
        if np.isin(dom, list(cfg.cinn.domains)).any():
            es = read_set(p.url, cfg.storage, split="val")
            es = _subset(
                es,
                np.isin(
                    np.asarray(es.columns["domain"], object), list(cfg.cinn.domains)
                ),
            )
            out.append(es)
    return [e for e in out if len(e)]


def _sample_set(bundle: ModelBundle, es: EvalSet, n_samples: int, seed: int
                ) -> tuple[np.ndarray, np.ndarray, np.ndarray]:
    """Posterior samples of a set's usable rows (no summaries: the fit needs none).

    Returns
    -------
    samples : numpy.ndarray
        (n_keep, S, 3) physical samples.
    keep : numpy.ndarray
        bool (N,) rows sampled (finite condition and samples).
    reps : numpy.ndarray
        (n_keep, D) their representations.
    """
    from ergo_ray.models.observables import observable_values

    reps = np.asarray(es.reps if es.reps is not None else bundle.represent(es.images),
                      np.float32)
    post = bundle.posterior_from_representations(
        reps, observables=observable_values(bundle.observables, es.column, len(es)),
        object_ids=[str(o) for o in es.columns["object_id"]])
    samples = post.sample(n_samples, seed)
    keep = post.ok
    if post.errors:
        first = next(iter(post.errors.items()))
        log.warning("widening fit: %d galaxies of %s left out (first: %s, %s)",
                    len(post.errors), es.name, *first)
    return samples[keep], keep, reps[keep]


def add_widening(bundle_url: str, data_urls: Sequence[str], cfg: RunConfig) -> str:
    """Fit the widening of the bundle at ``bundle_url`` and write it into the bundle.

    Parameters
    ----------
    bundle_url : str
        A bundle just written by ``train_cinn`` (without a widening).
    data_urls : sequence of str
        ``train-cinn``'s ``--data`` folders; those with truth columns are read.
    cfg : RunConfig
        Run configuration (``cinn.widening`` on).

    Returns
    -------
    str
        The bundle's new ``model_id`` (its files now include ``widening.json``).
    """
    import json

    from ergo_ray.infer.bundle import load_bundle
    from ergo_ray.io.prepared import discover_inputs
    from ergo_ray.shared.bundle_format import (
        MANIFEST,
        WIDENING_FILE,
        jsonable,
        read_verified,
        write_bundle,
    )

    inputs = [p for p in discover_inputs(list(data_urls), cfg.storage)
              if "true_exsitu_frac" in p.columns]
    widening = fit_widening(load_bundle(bundle_url, cfg.storage, device="cpu"), inputs, cfg)
    _, files = read_verified(bundle_url, cfg.storage)
    files = {k: v for k, v in files.items() if k != MANIFEST}
    files[WIDENING_FILE] = json.dumps(jsonable(widening.to_dict()), indent=2).encode()
    return write_bundle(bundle_url, files, cfg.storage)


def fit_widening(
    bundle: ModelBundle, inputs: Sequence[PreparedInput], cfg: RunConfig
) -> OodWidening:
    """Fit the widening of ``bundle`` (which must not have one yet) on held-out simulations.

    Parameters
    ----------
    bundle : ModelBundle
        The trained model, without widening.
    inputs : sequence of PreparedInput
        ``train-cinn``'s inputs.
    cfg : RunConfig
        Run configuration.

    Returns
    -------
    OodWidening
        The fitted step; ``fit_info`` records the rows per domain.

    Raises
    ------
    InputError
        When none of ``cinn.widening.domains`` is among the inputs, or too few rows fit.
    """
    wc = cfg.cinn.widening
    sets = calibration_sets(inputs, cfg)
    doms = {str(d) for es in sets for d in es.columns["domain"]}
    if not doms & set(wc.domains):
        msg = (
            f"cinn.widening is on but no train-cinn --data input holds its domains "
            f"{list(wc.domains)}; add their prepared folders to --data"
        )
        raise InputError(msg, source=st.redact(inputs[0].url) if inputs else "")
    samples, truth, ood, rows = [], [], [], {}
    for es in sets:
        smp, keep, reps = _sample_set(bundle, es, cfg.infer.n_samples, cfg.seed + 7)
        y, usable = encode_truth(*(es.column(c)[keep] for c in TRUTH_COLUMNS))
        samples.append(smp[usable])
        truth.append(y[usable])
        ood.append(bundle.ood_score(reps)[usable])
        for d in np.asarray(es.columns["domain"], object)[keep][usable]:
            rows[str(d)] = rows.get(str(d), 0) + 1
    try:
        w = OodWidening.fit(
            np.concatenate(samples),
            np.concatenate(truth),
            np.concatenate(ood),
            targets=wc.targets,
            n_bins=wc.n_bins,
            info={
                "rows": rows,
                "domains": list(wc.domains),
                "anchor": f"val split of {list(cfg.cinn.domains)}",
            },
        )
    except ValueError as err:
        raise InputError(
            f"cannot fit cinn.widening: {err}", source="train-cinn"
        ) from err
    log.info(
        "widening fitted on %s: %s",
        rows,
        ", ".join(
            f"{t}: log s = {c[0]:.3f} + {c[1]:.3f} log ood" for t, c in w.coef.items()
        ),
    )
    return w
