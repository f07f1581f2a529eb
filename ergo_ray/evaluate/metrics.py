"""Accuracy of posterior point estimates against truth (method.md §6).

Everything here is vectorised numpy on plain arrays: a *summary* is the mapping that
``ModelBundle.summarize`` returns (``{T}_map``, ``{T}_std``, ..., ``p_no_major_merger``) and
a *truth* is a mapping from target name to an (N,) array in physical units, NaN where a
galaxy had no major merger.

The paper's headline numbers:

* ex-situ fraction: fraction of galaxies with ``|MAP − truth| ≤ 0.1``;
* mass of the last major merger: fraction within ±0.5 dex, for merger galaxies with
  ``log M* > 9.5``;
* lookback time of the last major merger: mean absolute error and fractions within 1 and
  2 Gyr.

The merger targets are compared only where both the truth and the prediction are mergers
(the paper's MAP-vs-truth panels); the no-major-merger decision itself is scored as a
binary classification (:func:`nmm_classification`), with NMM predicted when
``p_no_major_merger ≥ 0.5``.
"""

from __future__ import annotations

from collections.abc import Mapping, Sequence
from itertools import pairwise
from typing import Any

import numpy as np

from ergo_ray.types import TARGETS

__all__ = [
    "MERGER_TARGETS",
    "NMM_THRESHOLD",
    "VALID_RANGES",
    "evaluate_predictions",
    "mask_invalid_samples",
    "mass_bin_metrics",
    "nmm_classification",
    "point_metrics",
    "target_metrics",
    "truth_from_columns",
]

#: Targets that describe the last major merger (NaN truth = no major merger).
MERGER_TARGETS: tuple[str, str] = ("lmm_lookback_gyr", "lmm_log_mass")
#: Valid intervals of the merger targets (method.md §4.2); samples outside mean "no merger".
VALID_RANGES: dict[str, tuple[float, float]] = {
    "lmm_lookback_gyr": (0.0, 13.7),
    "lmm_log_mass": (7.0, 11.5),
}
#: A galaxy is classified as having had no major merger when p_no_major_merger ≥ this.
NMM_THRESHOLD = 0.5

#: The paper's tolerance per target, and the extra tolerances reported.
_EXSITU_TOL = 0.1
_MASS_TOL_DEX = 0.5
_MASS_MIN_LOG_MSTAR = 9.5
_LOOKBACK_TOLS_GYR = (1.0, 2.0)


def _as_float(a: Any) -> np.ndarray:
    return np.asarray(a, dtype=np.float64)


def mask_invalid_samples(samples: np.ndarray) -> np.ndarray:
    """Return a copy of posterior samples with "no major merger" samples set to NaN.

    A sample describes a merger only when both merger targets lie inside
    :data:`VALID_RANGES`; otherwise both of its merger values become NaN (the same rule
    that makes ``p_no_major_merger``).

    Parameters
    ----------
    samples : numpy.ndarray
        (N, S, 3) samples in physical units, targets in :data:`ergo_ray.types.TARGETS` order.

    Returns
    -------
    numpy.ndarray
        float64 (N, S, 3); the ex-situ column unchanged, merger columns NaN for no-merger
        samples.

    Raises
    ------
    ValueError
        If ``samples`` is not (N, S, 3).
    """
    out = np.array(samples, dtype=np.float64, copy=True)
    if out.ndim != 3 or out.shape[2] != len(TARGETS):
        msg = f"samples must have shape (N, S, {len(TARGETS)}), got {out.shape}"
        raise ValueError(msg)
    merger = np.ones(out.shape[:2], dtype=bool)
    for name in MERGER_TARGETS:
        lo, hi = VALID_RANGES[name]
        col = out[:, :, TARGETS.index(name)]
        merger &= (col >= lo) & (col <= hi)
    for name in MERGER_TARGETS:
        out[:, :, TARGETS.index(name)][~merger] = np.nan
    return out


def truth_from_columns(columns: Mapping[str, Any]) -> dict[str, np.ndarray]:
    """Turn catalogue ``true_*`` columns into a truth mapping keyed by target name.

    A galaxy whose merger truths are not both inside the valid ranges (NaN, or the 15 Gyr /
    log 6 sentinels) gets NaN in both, the "no major merger" encoding of this module.

    Parameters
    ----------
    columns : mapping
        Must hold ``true_exsitu_frac``, ``true_lmm_lookback_gyr``, ``true_lmm_log_mass``.

    Returns
    -------
    dict of str to numpy.ndarray
        float64 arrays keyed by target name.

    Raises
    ------
    KeyError
        If a ``true_*`` column is missing.
    """
    out: dict[str, np.ndarray] = {}
    for name in TARGETS:
        col = f"true_{name}"
        if col not in columns:
            msg = f"truth column {col!r} is missing"
            raise KeyError(msg)
        out[name] = _as_float(columns[col]).copy()
    merger = np.ones(out[TARGETS[0]].shape, dtype=bool)
    for name in MERGER_TARGETS:
        lo, hi = VALID_RANGES[name]
        merger &= (out[name] >= lo) & (out[name] <= hi)
    for name in MERGER_TARGETS:
        out[name][~merger] = np.nan
    return out


def point_metrics(pred: np.ndarray, truth: np.ndarray) -> dict[str, float]:
    """Mean absolute error, RMSE, bias and median error over pairs where both are finite.

    Parameters
    ----------
    pred, truth : numpy.ndarray
        (N,) predictions and truths.

    Returns
    -------
    dict
        ``n``, ``mae``, ``rmse``, ``bias`` (mean of pred − truth), ``median_error`` and
        ``nmad`` (1.4826 × median absolute deviation of the error); NaN when ``n == 0``.
    """
    p, t = _as_float(pred), _as_float(truth)
    ok = np.isfinite(p) & np.isfinite(t)
    err = p[ok] - t[ok]
    n = int(err.size)
    if n == 0:
        nan = float("nan")
        return {"n": 0, "mae": nan, "rmse": nan, "bias": nan, "median_error": nan, "nmad": nan}
    med = float(np.median(err))
    return {
        "n": n,
        "mae": float(np.mean(np.abs(err))),
        "rmse": float(np.sqrt(np.mean(err**2))),
        "bias": float(np.mean(err)),
        "median_error": med,
        "nmad": float(1.4826 * np.median(np.abs(err - med))),
    }


def _frac_within(err: np.ndarray, tol: float) -> float:
    return float(np.mean(np.abs(err) <= tol)) if err.size else float("nan")


def target_metrics(
    summary: Mapping[str, np.ndarray],
    truth: Mapping[str, np.ndarray],
    log_mstar: np.ndarray | None = None,
    estimator: str = "map",
) -> dict[str, dict[str, Any]]:
    """Compute the paper's per-target accuracy metrics.

    Parameters
    ----------
    summary : mapping
        ``{T}_{estimator}`` columns (and ``p_no_major_merger``) as from ``summarize``.
    truth : mapping
        Target name → (N,) truth, NaN where no major merger.
    log_mstar : numpy.ndarray, optional
        (N,) log10 stellar mass; needed for the merger-mass criterion (``log M* > 9.5``).
    estimator : str
        Which summary statistic is the point estimate (default ``"map"``).

    Returns
    -------
    dict
        Per target: :func:`point_metrics` plus ``frac_within_0.1`` (ex-situ),
        ``frac_within_0.5dex`` over merger galaxies with ``log M* > 9.5`` and
        ``frac_within_0.5dex_all_mstar`` (mass), ``frac_within_1gyr`` and
        ``frac_within_2gyr`` (lookback).
    """
    out: dict[str, dict[str, Any]] = {}
    n = len(_as_float(truth[TARGETS[0]]))
    p_nmm = summary.get("p_no_major_merger")
    merger_pred = (
        _as_float(p_nmm) < NMM_THRESHOLD if p_nmm is not None else np.ones(n, dtype=bool)
    )
    for name in TARGETS:
        pred = _as_float(summary[f"{name}_{estimator}"]).copy()
        tru = _as_float(truth[name])
        if name in MERGER_TARGETS:
            pred[~merger_pred] = np.nan
        m: dict[str, Any] = point_metrics(pred, tru)
        ok = np.isfinite(pred) & np.isfinite(tru)
        err = pred[ok] - tru[ok]
        if name == "exsitu_frac":
            m["frac_within_0.1"] = _frac_within(err, _EXSITU_TOL)
        elif name == "lmm_log_mass":
            m["frac_within_0.5dex_all_mstar"] = _frac_within(err, _MASS_TOL_DEX)
            if log_mstar is not None:
                sel = ok & (_as_float(log_mstar) > _MASS_MIN_LOG_MSTAR)
                e = pred[sel] - tru[sel]
                m["frac_within_0.5dex"] = _frac_within(e, _MASS_TOL_DEX)
                m["n_mstar_gt_9.5"] = int(e.size)
            else:
                m["frac_within_0.5dex"] = float("nan")
                m["n_mstar_gt_9.5"] = 0
        elif name == "lmm_lookback_gyr":
            for tol in _LOOKBACK_TOLS_GYR:
                m[f"frac_within_{tol:g}gyr"] = _frac_within(err, tol)
        out[name] = m
    return out


def mass_bin_metrics(
    pred: np.ndarray,
    truth: np.ndarray,
    log_mstar: np.ndarray,
    edges: Sequence[float],
) -> list[dict[str, Any]]:
    """MAE, RMSE and bias of one target in bins of stellar mass.

    Parameters
    ----------
    pred, truth : numpy.ndarray
        (N,) point estimates and truths (NaN pairs are skipped).
    log_mstar : numpy.ndarray
        (N,) log10 stellar mass.
    edges : sequence of float
        Bin edges (``cfg.evaluate.mass_bins``); a galaxy falls in ``[lo, hi)``.

    Returns
    -------
    list of dict
        One row per bin: ``lo``, ``hi`` and :func:`point_metrics`.
    """
    p, t, m = _as_float(pred), _as_float(truth), _as_float(log_mstar)
    edges = [float(e) for e in edges]
    if len(edges) < 2 or any(b <= a for a, b in pairwise(edges)):
        msg = f"mass bin edges must be increasing with at least two values, got {edges}"
        raise ValueError(msg)
    idx = np.digitize(m, edges) - 1
    rows = []
    for b in range(len(edges) - 1):
        sel = idx == b
        rows.append({"lo": edges[b], "hi": edges[b + 1], **point_metrics(p[sel], t[sel])})
    return rows


def nmm_classification(
    p_no_major_merger: np.ndarray,
    truth_has_merger: np.ndarray,
    threshold: float = NMM_THRESHOLD,
) -> dict[str, Any]:
    """Score the no-major-merger (NMM) decision as a binary classification.

    Parameters
    ----------
    p_no_major_merger : numpy.ndarray
        (N,) posterior probability of no major merger.
    truth_has_merger : numpy.ndarray
        (N,) bool, True where the galaxy had a major merger.
    threshold : float
        NMM is predicted where ``p ≥ threshold``.

    Returns
    -------
    dict
        ``confusion`` [[merger→merger, merger→NMM], [NMM→merger, NMM→NMM]] (rows truth,
        columns prediction), ``labels``, and for the NMM class ``precision``, ``recall``,
        ``f1``, plus overall ``accuracy``, ``n`` and ``true_nmm_fraction``.
    """
    p = _as_float(p_no_major_merger)
    has = np.asarray(truth_has_merger, dtype=bool)
    ok = np.isfinite(p)
    pred_nmm = p[ok] >= threshold
    true_nmm = ~has[ok]
    tp = int(np.sum(pred_nmm & true_nmm))
    fp = int(np.sum(pred_nmm & ~true_nmm))
    fn = int(np.sum(~pred_nmm & true_nmm))
    tn = int(np.sum(~pred_nmm & ~true_nmm))
    n = tp + fp + fn + tn
    nan = float("nan")
    precision = tp / (tp + fp) if tp + fp else nan
    recall = tp / (tp + fn) if tp + fn else nan
    f1 = (
        2 * precision * recall / (precision + recall)
        if np.isfinite(precision) and np.isfinite(recall) and precision + recall > 0
        else nan
    )
    return {
        "labels": ["merger", "no_major_merger"],
        "confusion": [[tn, fp], [fn, tp]],
        "precision": precision,
        "recall": recall,
        "f1": f1,
        "accuracy": (tp + tn) / n if n else nan,
        "n": n,
        "true_nmm_fraction": (tp + fn) / n if n else nan,
        "threshold": threshold,
    }


def evaluate_predictions(
    summary: Mapping[str, np.ndarray],
    truth: Mapping[str, np.ndarray],
    log_mstar: np.ndarray | None,
    mass_bins: Sequence[float],
    estimator: str = "map",
) -> dict[str, Any]:
    """All point-estimate metrics of one model on one set.

    Parameters
    ----------
    summary : mapping
        Output of ``summarize``.
    truth : mapping
        Target name → truth (NaN = no major merger).
    log_mstar : numpy.ndarray or None
        Stellar masses (mass-bin table and the merger-mass criterion).
    mass_bins : sequence of float
        Stellar-mass bin edges.
    estimator : str
        Point estimate used (default MAP).

    Returns
    -------
    dict
        ``targets`` (see :func:`target_metrics`), ``mass_bins`` (per target, see
        :func:`mass_bin_metrics`) and ``nmm`` (see :func:`nmm_classification`).
    """
    out: dict[str, Any] = {"estimator": estimator}
    out["targets"] = target_metrics(summary, truth, log_mstar, estimator)
    if log_mstar is not None:
        p_nmm = summary.get("p_no_major_merger")
        bins = {}
        for name in TARGETS:
            pred = _as_float(summary[f"{name}_{estimator}"]).copy()
            if name in MERGER_TARGETS and p_nmm is not None:
                pred[_as_float(p_nmm) >= NMM_THRESHOLD] = np.nan
            bins[name] = mass_bin_metrics(pred, truth[name], log_mstar, mass_bins)
        out["mass_bins"] = bins
    if "p_no_major_merger" in summary:
        has = np.isfinite(_as_float(truth["lmm_lookback_gyr"]))
        out["nmm"] = nmm_classification(summary["p_no_major_merger"], has)
    return out
