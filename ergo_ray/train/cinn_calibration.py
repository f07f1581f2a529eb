"""Test-split calibration and accuracy of a trained cINN, written into ``metrics.json``.

Two checks (method.md §5, plus the coverage test the method lacks):

* **latent normality** — the test set pushed forward, ``z = f(y; c)``, should be N(0, I):
  the mean, the per-dimension deviation and ``‖cov(z) − I‖_F`` are reported;
* **coverage** — the fraction of test galaxies whose true value lies inside the posterior's
  central 68 % (p16–p84) and 90 % (p05–p95) intervals, per target; the merger targets are
  scored over the galaxies that had a major merger, with the intervals of their in-range
  samples (a galaxy whose samples all say "no merger" counts as not covered).

Point accuracy follows the paper's headline figures (method.md §6): the fraction with
``|MAP − truth| ≤ 0.1`` in ex-situ fraction, the fraction within 0.5 dex in merger mass for
``log M* > 9.5``, the lookback-time MAE, and the no-merger classification accuracy
(``p_no_major_merger > 0.5``).
"""

from __future__ import annotations

import math
from typing import Any

import numpy as np
import torch

from ergo_ray.models.cinn import ConditionalINN
from ergo_ray.models.targets import merger_mask
from ergo_ray.shared.summaries import summarize
from ergo_ray.types import TARGETS

__all__ = ["latent_normality", "posterior_metrics"]


def _f(v: Any) -> float | None:
    v = float(v)
    return v if math.isfinite(v) else None


def latent_normality(
    model: ConditionalINN, targets_std: np.ndarray, cond: np.ndarray
) -> dict[str, Any]:
    """Mean and covariance of the test set's latent codes against N(0, I).

    Parameters
    ----------
    model : ConditionalINN
        Trained network.
    targets_std : numpy.ndarray
        (N, 3) standardised test targets.
    cond : numpy.ndarray
        (N, C) their conditions.

    Returns
    -------
    dict
        ``n``, ``mean``, ``std``, ``max_abs_mean``, ``cov_residual_fro`` (None when N < 2).
    """
    n = len(targets_std)
    if n < 2:
        return {
            "n": n,
            "mean": None,
            "std": None,
            "max_abs_mean": None,
            "cov_residual_fro": None,
        }
    dev = next(model.parameters()).device
    with torch.no_grad():
        z, _ = model(
            torch.as_tensor(targets_std, dtype=torch.float32, device=dev),
            torch.as_tensor(cond, dtype=torch.float32, device=dev),
        )
    z = z.double().cpu().numpy()
    cov = np.cov(z, rowvar=False)
    return {
        "n": n,
        "mean": [_f(v) for v in z.mean(0)],
        "std": [_f(v) for v in z.std(0, ddof=1)],
        "max_abs_mean": _f(np.abs(z.mean(0)).max()),
        "cov_residual_fro": _f(np.linalg.norm(cov - np.eye(z.shape[1]))),
    }


def _frac(mask: np.ndarray) -> float | None:
    return _f(mask.mean()) if mask.size else None


def posterior_metrics(
    samples: np.ndarray,
    truth: np.ndarray,
    log_mstar: np.ndarray,
    *,
    grid: int = 512,
    device: Any = None,
) -> dict[str, Any]:
    """Coverage and point accuracy of posterior samples against the truth.

    Parameters
    ----------
    samples : numpy.ndarray
        (N, S, 3) physical posterior samples.
    truth : numpy.ndarray
        (N, 3) physical truth with no-merger sentinels
        (:func:`ergo_ray.models.targets.encode_truth`).
    log_mstar : numpy.ndarray
        (N,) stellar masses (for the mass-cut figure).
    grid : int
        KDE grid of the MAP.
    device : str or torch.device, optional
        Where the summaries run.

    Returns
    -------
    dict
        ``coverage`` per target (``n``, ``c68``, ``c90``) and ``accuracy`` figures.
    """
    n = len(samples)
    if n == 0:
        return {"n": 0, "coverage": {}, "accuracy": {}}
    s = summarize(samples, grid=grid, device=device)
    merger = np.asarray(merger_mask(truth), bool)
    cov: dict[str, Any] = {}
    for t, name in enumerate(TARGETS):
        rows = np.ones(n, bool) if t == 0 else merger
        y = truth[rows, t]
        lo68, hi68 = s[f"{name}_p16"][rows], s[f"{name}_p84"][rows]
        lo90, hi90 = s[f"{name}_p05"][rows], s[f"{name}_p95"][rows]
        with np.errstate(invalid="ignore"):
            in68 = (y >= lo68) & (y <= hi68)
            in90 = (y >= lo90) & (y <= hi90)
        cov[name] = {"n": int(rows.sum()), "c68": _frac(in68), "c90": _frac(in90)}
    err_fx = np.abs(s["exsitu_frac_map"] - truth[:, 0])
    lb = merger & np.isfinite(s["lmm_lookback_gyr_map"])
    mass_rows = (
        merger & (np.asarray(log_mstar) > 9.5) & np.isfinite(s["lmm_log_mass_map"])
    )
    pred_nmm = s["p_no_major_merger"] > 0.5
    acc = {
        "exsitu_frac_within_0.1": _frac(err_fx <= 0.1),
        "exsitu_frac_mae": _f(np.mean(err_fx)),
        "lmm_lookback_gyr_mae": _f(
            np.mean(np.abs(s["lmm_lookback_gyr_map"][lb] - truth[lb, 1]))
        )
        if lb.any()
        else None,
        "lmm_log_mass_within_0.5dex_mstar_gt_9.5": _frac(
            np.abs(s["lmm_log_mass_map"][mass_rows] - truth[mass_rows, 2]) <= 0.5
        ),
        "n_mass_gt_9.5_mergers": int(mass_rows.sum()),
        "nmm_accuracy": _frac(pred_nmm == ~merger),
        "true_nmm_fraction": _frac(~merger),
    }
    return {"n": n, "coverage": cov, "accuracy": acc}
