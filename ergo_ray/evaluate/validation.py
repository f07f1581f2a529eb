"""``validate``: accuracy and calibration of a model bundle on a set with truth.

:func:`validate_set` samples the posteriors of a set
(:func:`~ergo_ray.evaluate.set_posterior.posterior_for_set`) and computes every metric for
the model and, beside it, for the bundle's mass+redshift baseline;
:func:`~ergo_ray.evaluate.validation_output.write_validation` writes them.
"""

from __future__ import annotations

import logging
from collections.abc import Mapping
from dataclasses import dataclass
from typing import Any

import numpy as np

from ergo_ray.errors import InputError
from ergo_ray.evaluate.calibration import calibration_metrics, latent_normality
from ergo_ray.evaluate.inputs import EvalSet
from ergo_ray.evaluate.metrics import evaluate_predictions, target_metrics, truth_from_columns
from ergo_ray.evaluate.set_posterior import baseline_for_set, posterior_for_set
from ergo_ray.io import storage as st
from ergo_ray.io.schemas import TRUTH_COLUMNS
from ergo_ray.types import TARGETS

__all__ = ["ValidationResult", "interval_figures", "validate_set"]

log = logging.getLogger("ergo_ray")


def _latents(bundle: Any, cond: np.ndarray, truth_cols: Mapping[str, np.ndarray],
             net_name: str = "cinn") -> np.ndarray | None:
    """Forward-pass latents z of the true targets (the method's z ~ N(0, I) check)."""
    net = getattr(bundle, net_name, None)
    transform = getattr(bundle, "transform", None)
    if net is None or transform is None:
        return None
    import torch

    from ergo_ray.models.targets import encode_truth

    y, usable = encode_truth(*(np.asarray(truth_cols[c], np.float64) for c in TRUTH_COLUMNS))
    usable &= np.isfinite(cond).all(axis=1)
    if usable.sum() < 2:
        return None
    dev = getattr(bundle, "device", "cpu")
    with torch.inference_mode():
        x = transform.forward(torch.as_tensor(y[usable], dtype=torch.float32, device=dev))
        c = torch.as_tensor(np.asarray(cond[usable], np.float32), device=dev)
        z, _ = net.forward(x, c)
    return z.double().cpu().numpy()


@dataclass
class ValidationResult:
    """Everything ``validate`` computed.

    Attributes
    ----------
    metrics : dict
        The content of ``metrics.json``.
    summary : dict
        The headline figures (``summary.json``).
    truth : dict
        Target → truth of the kept rows.
    model, baseline : dict
        Summaries of the kept rows (baseline None when the bundle has none).
    columns : dict
        Catalogue columns of the kept rows.
    """

    metrics: dict[str, Any]
    summary: dict[str, Any]
    truth: dict[str, np.ndarray]
    model: dict[str, np.ndarray]
    baseline: dict[str, np.ndarray] | None
    columns: dict[str, np.ndarray]


def _headline(metrics: Mapping[str, Any]) -> dict[str, Any]:
    def both(get: Any) -> dict[str, Any]:
        out = {"model": get(metrics["model"])}
        if metrics.get("baseline"):
            out["baseline"] = get(metrics["baseline"])
        return out

    t = lambda m, name, key: m["targets"][name][key]  # noqa: E731
    return {
        "model_id": metrics["model_id"],
        "set": metrics["set"],
        "n_objects": metrics["n_objects"],
        "exsitu_frac_within_0.1": both(lambda m: t(m, "exsitu_frac", "frac_within_0.1")),
        "lmm_log_mass_within_0.5dex_mstar_gt_9.5": both(
            lambda m: t(m, "lmm_log_mass", "frac_within_0.5dex")),
        "lmm_lookback_gyr_mae": both(lambda m: t(m, "lmm_lookback_gyr", "mae")),
        "lmm_lookback_within_1gyr": both(lambda m: t(m, "lmm_lookback_gyr", "frac_within_1gyr")),
        "lmm_lookback_within_2gyr": both(lambda m: t(m, "lmm_lookback_gyr", "frac_within_2gyr")),
        "nmm_accuracy": both(lambda m: (m.get("nmm") or {}).get("accuracy")),
        "bias": {name: both(lambda m, n=name: t(m, n, "bias")) for name in TARGETS},
        "mae": {name: both(lambda m, n=name: t(m, n, "mae")) for name in TARGETS},
        "coverage_max_abs_deviation": {
            name: both(lambda m, n=name: m["calibration"][n]["coverage"]["max_abs_deviation"])
            for name in TARGETS},
        "pit_mean": {name: both(lambda m, n=name: m["calibration"][n]["pit"]["mean"])
                     for name in TARGETS},
        "calibration": {name: both(lambda m, n=name: interval_figures(m, n))
                        for name in TARGETS},
    }


def interval_figures(m: Mapping[str, Any], name: str) -> dict[str, Any]:
    """Coverage of the 68 % and 90 % intervals, PIT KS and mean, and bias of one target.

    Parameters
    ----------
    m : mapping
        The ``model`` (or ``baseline``) section of ``metrics.json``.
    name : str
        Target name.

    Returns
    -------
    dict
        ``c68``, ``c90``, ``pit_ks``, ``pit_mean``, ``bias`` and ``n`` (None where not
        measured).
    """
    cal = m["calibration"][name]
    cov = cal["coverage"]
    at = {round(float(lv), 4): c for lv, c in zip(cov["levels"], cov["coverage"], strict=True)}
    return {"c68": at.get(0.68), "c90": at.get(0.9), "pit_ks": cal["pit"].get("ks"),
            "pit_mean": cal["pit"].get("mean"), "bias": m["targets"][name]["bias"],
            "n": cov.get("n")}


def _check_truth(es: EvalSet) -> None:
    missing = [c for c in TRUTH_COLUMNS if c not in es.columns]
    if missing or not np.isfinite(es.column("true_exsitu_frac")).any():
        what = missing or ["true_exsitu_frac"]
        msg = (f"{es.name}: no truth to validate against (missing or empty {what}); "
               "pass --truth URL for a survey whose truth is kept apart")
        raise InputError(msg, source=es.name)


@dataclass
class _Scorer:
    """Scores one estimator's samples of the kept rows against their truth."""

    bundle: Any
    cols: dict[str, np.ndarray]
    truth: dict[str, np.ndarray]
    mass: np.ndarray
    mass_bins: tuple[float, ...]

    @property
    def scored(self) -> np.ndarray:
        """(n_keep,) bool: the rows with truth."""
        return np.isfinite(self.truth["exsitu_frac"])

    def __call__(self, samples: np.ndarray, summary: Mapping[str, np.ndarray],
                 cond: np.ndarray | None, net: str) -> dict[str, Any]:
        """Accuracy, calibration and (given the conditions) latent normality of one net."""
        sel = self.scored & np.isfinite(samples).all(axis=(1, 2))
        tr = {k: v[sel] for k, v in self.truth.items()}
        out = evaluate_predictions({k: np.asarray(v)[sel] for k, v in summary.items()}, tr,
                                   self.mass[sel], self.mass_bins)
        out["n"] = int(sel.sum())
        out["calibration"] = calibration_metrics(samples[sel], tr)
        if cond is not None:
            z = _latents(self.bundle, cond[sel],
                         {c: self.cols[c][sel] for c in TRUTH_COLUMNS}, net)
            out["latent_normality"] = latent_normality(z) if z is not None else None
        return out

    def per_domain(self, model: Mapping[str, np.ndarray],
                   baseline: Mapping[str, np.ndarray] | None) -> dict[str, Any] | None:
        """Accuracy per domain, when the set holds more than one."""
        doms = np.asarray(self.cols.get("domain", np.array([], dtype=object))).astype(str)
        if len(set(doms.tolist())) < 2:
            return None
        per: dict[str, Any] = {}
        for d in sorted(set(doms.tolist())):
            sel = (doms == d) & self.scored
            tr = {k: v[sel] for k, v in self.truth.items()}
            per[d] = {"n": int(sel.sum()), "model": target_metrics(
                {k: v[sel] for k, v in model.items()}, tr, self.mass[sel])}
            if baseline is not None:
                per[d]["baseline"] = target_metrics(
                    {k: v[sel] for k, v in baseline.items()}, tr, self.mass[sel])
        return per


def validate_set(bundle: Any, es: EvalSet, n_samples: int, seed: int,
                 mass_bins: tuple[float, ...]) -> ValidationResult:
    """Sample, summarise and score a set with truth.

    Parameters
    ----------
    bundle : ergo_ray.infer.bundle.ModelBundle
        The model.
    es : EvalSet
        The set; must carry the ``true_*`` columns (joined from ``--truth`` if need be).
    n_samples : int
        Posterior samples per galaxy.
    seed : int
        Run seed.
    mass_bins : tuple of float
        Stellar-mass bin edges.

    Returns
    -------
    ValidationResult
        Metrics for the model and the baseline; a galaxy that could not be sampled is
        left out and counted in ``n_skipped``.

    Raises
    ------
    InputError
        If the set has no truth, or no galaxy of it can be sampled.
    """
    _check_truth(es)
    post = posterior_for_set(bundle, es, n_samples, seed)
    keep = post.keep
    n = int(keep.sum())
    cols = {k: v[keep] for k, v in es.columns.items()}
    mass = np.asarray(cols.get("log_mstar", np.full(n, np.nan)), np.float64)
    score = _Scorer(bundle, cols, truth_from_columns(cols), mass, mass_bins)
    domains = cols.get("domain", np.array(["?"] * n, dtype=object)).astype(str)
    metrics: dict[str, Any] = {
        "model_id": getattr(bundle, "model_id", None),
        "set": es.name,
        "inputs": [st.redact(u) for u in es.sources],
        "n_objects": n,
        "n_skipped": len(post.errors),
        "n_samples": int(n_samples),
        "domains": {str(d): int(c) for d, c in zip(*np.unique(domains, return_counts=True),
                                                   strict=True)},
        "mass_bins": list(mass_bins),
        "model": score(post.samples, post.summary, post.cond, "cinn"),
        "baseline": None,
    }
    base = baseline_for_set(bundle, es, keep, n_samples, seed)
    b_summary = None
    if base is not None:
        b_samples, b_summary = base
        scaler = getattr(bundle, "baseline_scaler", None)
        cond = None
        if scaler is not None:
            raw = np.stack([mass, np.asarray(cols["redshift"], np.float64)], axis=1)
            cond = np.asarray(scaler.forward(raw), np.float32)
        metrics["baseline"] = score(b_samples, b_summary, cond, "baseline")
    per = score.per_domain(post.summary, b_summary)
    if per is not None:
        metrics["per_domain"] = per
    metrics["bias"] = {name: metrics["model"]["targets"][name]["bias"] for name in TARGETS}
    return ValidationResult(metrics, _headline(metrics), score.truth, post.summary, b_summary,
                            cols)
