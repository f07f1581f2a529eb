"""Shift-aware posterior widening: each galaxy's posterior is widened with its OOD score.

A cINN trained on TNG-like domains is calibrated on them. Away from them its posteriors are
too narrow: the likelihood it learned no longer holds exactly and the prior it learned (the
ex-situ fractions of TNG at fixed mass) is not the new domain's. The per-galaxy OOD score
(method.md §7) measures how far a galaxy's representation is from the training set. This
step widens every posterior about its median by a factor that grows with that score,

    u' = m + s(ood) (u − m),   log s(ood) = c0 + c1 · clip(log ood, lo, hi),  c1 ≥ 0,

where u is a target in the space the step works in (logit of the ex-situ fraction; the
merger targets as they are, on the samples inside their valid range, so that the
"no major merger" samples and ``p_no_major_merger`` are untouched) and m its posterior
median. ``c0``, ``c1`` are fitted on simulated domains whose truth is known and that the cINN
did not train on (and on the validation split of its own domains, which anchors s ≈ 1 in
domain): per quantile bin of log ood, the factor that makes the 50–95 % central intervals
cover their nominal fractions, then a weighted straight line through the bins. The feature
is clipped to the fitted range: the relation is not extrapolated beyond the data it was
fitted on. Never fitted on an observed survey (its truth is not known, and for a real
survey does not exist).
"""

from __future__ import annotations

import warnings
from collections.abc import Mapping, Sequence
from dataclasses import dataclass, field
from typing import Any

import numpy as np

from ergo_ray.models.targets import MERGER_INDICES, VALID_RANGES
from ergo_ray.types import TARGETS

__all__ = ["COVERAGE_LEVELS", "OodWidening", "needed_scale"]

#: Central-interval levels the fit matches.
COVERAGE_LEVELS: tuple[float, ...] = (0.5, 0.68, 0.8, 0.9, 0.95)
#: Grid of widening factors searched per bin.
_S_GRID = np.geomspace(0.5, 6.0, 121)
_EPS = 1e-4


def _to_space(values: np.ndarray, t: int) -> np.ndarray:
    """Physical values of target ``t`` → the step's space (NaN where not widened)."""
    v = np.asarray(values, np.float64)
    if t == 0:
        return np.log(np.clip(v, _EPS, 1 - _EPS) / (1 - np.clip(v, _EPS, 1 - _EPS)))
    lo, hi = VALID_RANGES[TARGETS[t]]
    return np.where((v >= lo) & (v <= hi), v, np.nan)


def _from_space(u: np.ndarray, t: int) -> np.ndarray:
    if t == 0:
        return 1.0 / (1.0 + np.exp(-u))
    lo, hi = VALID_RANGES[TARGETS[t]]
    return np.clip(u, lo, hi)


def needed_scale(
    u_samples: np.ndarray, u_true: np.ndarray, levels: Sequence[float] = COVERAGE_LEVELS
) -> np.ndarray:
    """Smallest widening factor that puts the truth inside each central interval.

    Parameters
    ----------
    u_samples : numpy.ndarray
        (N, S) samples in the step's space (NaN samples are ignored).
    u_true : numpy.ndarray
        (N,) truths in that space.
    levels : sequence of float
        Central-interval levels.

    Returns
    -------
    numpy.ndarray
        (N, L): the interval about the median, widened by this factor, just reaches the
        truth (0 when the truth is the median, inf when the interval has no width on the
        truth's side); NaN for a galaxy without samples or truth.
    """
    qs = [50.0] + [q for a in levels for q in (50 * (1 - a), 50 * (1 + a))]
    with np.errstate(all="ignore"), warnings.catch_warnings():
        # a galaxy with only NaN samples (all "no merger") gets NaN quantiles
        warnings.simplefilter("ignore", RuntimeWarning)
        q = np.nanpercentile(u_samples, qs, axis=1)
        med = q[0]
        d = u_true - med
        out = np.empty((len(u_true), len(levels)))
        for j in range(len(levels)):
            lo, hi = q[1 + 2 * j], q[2 + 2 * j]
            half = np.where(d >= 0, hi - med, med - lo)
            out[:, j] = np.where(d == 0, 0.0, np.abs(d) / half)
    out[~np.isfinite(u_true) | ~np.isfinite(med)] = np.nan
    return out


def _best_scale(need: np.ndarray, levels: Sequence[float]) -> float:
    """Factor whose widened intervals cover the nominal fractions best (squared error)."""
    cov = (need[None, :, :] <= _S_GRID[:, None, None]).mean(axis=1)  # (G, L)
    loss = ((cov - np.asarray(levels)[None, :]) ** 2).sum(axis=1)
    return float(_S_GRID[int(np.argmin(loss))])


def _fit_line(
    need: np.ndarray, ell: np.ndarray, n_bins: int, levels: Sequence[float]
) -> tuple[tuple[float, float], dict[str, Any]]:
    """Fit ``log scale = c0 + c1 · log ood`` (c1 ≥ 0) to the best scale of each OOD bin.

    Parameters
    ----------
    need : numpy.ndarray
        (N, len(levels)) scale each galaxy needs to cover its truth at each level.
    ell : numpy.ndarray
        (N,) clipped log OOD scores.
    n_bins : int
        Quantile bins of ``ell`` (a bin with fewer than 4 galaxies is left out).
    levels : sequence of float
        Central-interval levels.

    Returns
    -------
    coef : tuple of float
        (c0, c1).
    bins : dict
        ``log_ood``, ``scale`` and ``n`` of the bins used.
    """
    edges = np.quantile(ell, np.linspace(0, 1, n_bins + 1))
    which = np.clip(
        np.searchsorted(edges, ell, side="right") - 1, 0, n_bins - 1
    )
    xs, ys, ws = [], [], []
    for b in range(n_bins):
        sel = which == b
        if sel.sum() < 4:
            continue
        xs.append(float(ell[sel].mean()))
        ys.append(np.log(_best_scale(need[sel], levels)))
        ws.append(float(sel.sum()))
    x, y, w = np.asarray(xs), np.asarray(ys), np.asarray(ws)
    c1 = 0.0
    if len(x) >= 2 and np.ptp(x) > 0:
        xm = np.average(x, weights=w)
        c1 = float(
            np.sum(w * (x - xm) * (y - np.average(y, weights=w)))
            / np.sum(w * (x - xm) ** 2)
        )
    c1 = max(c1, 0.0)
    c0 = float(np.average(y - c1 * x, weights=w))
    return (c0, c1), {
        "log_ood": xs,
        "scale": [float(np.exp(v)) for v in ys],
        "n": [int(v) for v in ws],
    }


@dataclass(frozen=True)
class OodWidening:
    """Fitted widening of the posteriors as a function of the OOD score.

    Attributes
    ----------
    targets : tuple of str
        Targets that are widened (names of :data:`ergo_ray.types.TARGETS`).
    coef : dict of str to (float, float)
        ``(c0, c1)`` per target: ``log s = c0 + c1 · clip(log ood, lo, hi)``.
    log_ood_range : (float, float)
        ``(lo, hi)``, the 1st and 99th percentiles of log ood in the fit's data.
    scale_range : (float, float)
        Bounds of the factor.
    fit_info : dict
        What the fit saw: domains, rows, the per-bin factors.
    """

    targets: tuple[str, ...]
    coef: Mapping[str, tuple[float, float]]
    log_ood_range: tuple[float, float]
    scale_range: tuple[float, float] = (0.5, 6.0)
    fit_info: Mapping[str, Any] = field(default_factory=dict, compare=False)

    # ----------------------------------------------------------------- use
    def scale(self, target: str, ood: np.ndarray) -> np.ndarray:
        """Widening factor of ``target`` for each OOD score (NaN score: no OOD evidence, 1)."""
        c0, c1 = self.coef[target]
        o = np.asarray(ood, np.float64)
        ell = np.clip(np.log(np.clip(o, 1e-6, None)), *self.log_ood_range)
        s = np.clip(np.exp(c0 + c1 * ell), *self.scale_range)
        return np.where(np.isfinite(o), s, 1.0)

    def apply(self, samples: Any, ood: np.ndarray) -> Any:
        """Widen posterior samples.

        Parameters
        ----------
        samples : numpy.ndarray or torch.Tensor
            (N, S, 3) physical samples (as :meth:`ModelBundle.sample_posterior` returns).
        ood : numpy.ndarray
            (N,) OOD scores.

        Returns
        -------
        numpy.ndarray or torch.Tensor
            Widened samples, same type, dtype and device as the input.
        """
        is_torch = not isinstance(samples, np.ndarray)
        arr = (
            samples.detach().float().cpu().numpy() if is_torch else np.asarray(samples)
        )
        out = np.array(arr, copy=True)
        for name in self.targets:
            t = TARGETS.index(name)
            u = _to_space(arr[:, :, t], t)
            with np.errstate(all="ignore"), warnings.catch_warnings():
                warnings.simplefilter("ignore", RuntimeWarning)
                med = np.nanmedian(u, axis=1, keepdims=True)
            s = self.scale(name, ood)[:, None]
            widened = _from_space(med + s * (u - med), t)
            keep = np.isfinite(u)
            out[:, :, t] = np.where(keep, widened, arr[:, :, t])
        if is_torch:
            import torch

            return torch.as_tensor(out, dtype=samples.dtype, device=samples.device)
        return out.astype(arr.dtype, copy=False)

    # ----------------------------------------------------------------- fit
    @classmethod
    def fit(
        cls,
        samples: np.ndarray,
        truth: np.ndarray,
        ood: np.ndarray,
        targets: Sequence[str] = ("exsitu_frac",),
        n_bins: int = 6,
        levels: Sequence[float] = COVERAGE_LEVELS,
        info: Mapping[str, Any] | None = None,
    ) -> OodWidening:
        """Fit the widening on galaxies whose truth is known.

        Parameters
        ----------
        samples : numpy.ndarray
            (N, S, 3) physical posterior samples of the unwidened model.
        truth : numpy.ndarray
            (N, 3) physical truth with no-merger sentinels
            (:func:`ergo_ray.models.targets.encode_truth`).
        ood : numpy.ndarray
            (N,) OOD scores.
        targets : sequence of str
            Targets to widen.
        n_bins : int
            Quantile bins of log ood.
        levels : sequence of float
            Central-interval levels to match.
        info : mapping, optional
            Recorded in ``fit_info`` (e.g. the domains the data came from).

        Returns
        -------
        OodWidening
            The fitted step.

        Raises
        ------
        ValueError
            When fewer than ``4 n_bins`` galaxies have a finite OOD score and truth.
        """
        o = np.asarray(ood, np.float64)
        ok = np.isfinite(o) & (o > 0)
        if ok.sum() < 4 * n_bins:
            msg = f"too few galaxies to fit the widening ({int(ok.sum())} with an OOD score)"
            raise ValueError(msg)
        ell_all = np.log(o[ok])
        rng = (float(np.percentile(ell_all, 1)), float(np.percentile(ell_all, 99)))
        coef: dict[str, tuple[float, float]] = {}
        bins_info: dict[str, Any] = {}
        for name in targets:
            t = TARGETS.index(name)
            rows = ok.copy()
            if t in MERGER_INDICES:
                lo, hi = VALID_RANGES[name]
                rows &= (truth[:, t] >= lo) & (truth[:, t] <= hi)
            need = needed_scale(
                _to_space(samples[rows, :, t], t), _to_space(truth[rows, t], t), levels
            )
            good = ~np.isnan(need).any(axis=1)
            need, ell = need[good], np.clip(np.log(o[rows][good]), *rng)
            coef[name], bins_info[name] = _fit_line(need, ell, n_bins, levels)
        meta = {
            **dict(info or {}),
            "n": int(ok.sum()),
            "bins": bins_info,
            "levels": list(levels),
        }
        return cls(tuple(targets), coef, rng, fit_info=meta)

    # ----------------------------------------------------------------- storage
    def to_dict(self) -> dict[str, Any]:
        """JSON-able form (stored as ``widening.json`` in the model bundle)."""
        return {
            "kind": "ood_widening",
            "targets": list(self.targets),
            "coef": {k: list(v) for k, v in self.coef.items()},
            "log_ood_range": list(self.log_ood_range),
            "scale_range": list(self.scale_range),
            "fit_info": dict(self.fit_info),
        }

    @classmethod
    def from_dict(cls, d: Mapping[str, Any]) -> OodWidening:
        """Inverse of :meth:`to_dict`.

        Raises
        ------
        ValueError
            For another kind of step, an unknown target or a missing coefficient.
        """
        if d.get("kind") != "ood_widening":
            msg = f"not an OOD widening: kind {d.get('kind')!r}"
            raise ValueError(msg)
        targets = tuple(d["targets"])
        unknown = [t for t in targets if t not in TARGETS or t not in d["coef"]]
        if unknown:
            msg = f"widening of unknown targets or without coefficients: {unknown}"
            raise ValueError(msg)
        return cls(
            targets,
            {k: (float(v[0]), float(v[1])) for k, v in d["coef"].items()},
            (float(d["log_ood_range"][0]), float(d["log_ood_range"][1])),
            (float(d["scale_range"][0]), float(d["scale_range"][1])),
            fit_info=dict(d.get("fit_info") or {}),
        )
