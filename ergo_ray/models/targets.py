"""Posterior targets: encoding of the truth, valid ranges and the invertible scaling.

The cINN models three quantities (method.md §4.2), in the order of
:data:`ergo_ray.types.TARGETS`: the ex-situ stellar fraction, the lookback time of the last
major merger [Gyr] and the log10 stellar mass of its secondary [Msun]. Galaxies without a
major merger get sentinel values outside the valid ranges (15 Gyr and log M = 6), so the
network learns "no major merger" as a region of the target space; at inference every
posterior sample outside a valid range counts towards ``p_no_major_merger``.

:class:`TargetTransform` maps physical values to the network's standardised space
(optionally through a logit for the ex-situ fraction) and back. It is fitted on the
training split and stored as JSON in the model bundle.
"""

from __future__ import annotations

from collections.abc import Mapping
from dataclasses import dataclass, field
from typing import Any, Literal

import numpy as np
import torch

from ergo_ray.errors import CheckpointError
from ergo_ray.types import TARGETS

#: Valid physical ranges of the merger targets (method.md §4.2, [CODE-22] ``VALID_RANGE``).
VALID_RANGES: dict[str, tuple[float, float]] = {
    "lmm_lookback_gyr": (0.0, 13.7),
    "lmm_log_mass": (7.0, 11.5),
}
#: Values that encode "no major merger" (outside the valid ranges).
NO_MERGER_VALUES: dict[str, float] = {"lmm_lookback_gyr": 15.0, "lmm_log_mass": 6.0}
#: Index of each target in the cINN's output vector.
TARGET_INDEX: dict[str, int] = {t: i for i, t in enumerate(TARGETS)}
#: Indices of the merger targets.
MERGER_INDICES: tuple[int, ...] = (
    TARGET_INDEX["lmm_lookback_gyr"],
    TARGET_INDEX["lmm_log_mass"],
)

ArrayLike = np.ndarray | torch.Tensor


def encode_truth(
    exsitu_frac: np.ndarray, lmm_lookback_gyr: np.ndarray, lmm_log_mass: np.ndarray
) -> tuple[np.ndarray, np.ndarray]:
    """Stack the ``true_*`` columns into physical target vectors with sentinels.

    A galaxy has no major merger when its lookback time or its merger mass is NaN; both
    merger targets then take their sentinel values. A non-finite ex-situ fraction makes the
    row unusable.

    Parameters
    ----------
    exsitu_frac, lmm_lookback_gyr, lmm_log_mass : numpy.ndarray
        (N,) truth columns as in the catalogue (NaN where no major merger).

    Returns
    -------
    targets : numpy.ndarray
        float64 (N, 3) physical targets in :data:`~ergo_ray.types.TARGETS` order.
    usable : numpy.ndarray
        bool (N,): False where the ex-situ fraction is missing or outside [0, 1].
    """
    fx = np.asarray(exsitu_frac, dtype=np.float64)
    lb = np.asarray(lmm_lookback_gyr, dtype=np.float64)
    lm = np.asarray(lmm_log_mass, dtype=np.float64)
    no_merger = ~np.isfinite(lb) | ~np.isfinite(lm)
    y = np.stack([fx, lb, lm], axis=1)
    y[no_merger, 1] = NO_MERGER_VALUES["lmm_lookback_gyr"]
    y[no_merger, 2] = NO_MERGER_VALUES["lmm_log_mass"]
    usable = np.isfinite(fx) & (fx >= 0.0) & (fx <= 1.0)
    return y, usable


def merger_mask(values: ArrayLike) -> ArrayLike:
    """Return True where a target vector describes a major merger (both in valid range).

    Parameters
    ----------
    values : numpy.ndarray or torch.Tensor
        (..., 3) physical targets (truth or posterior samples).

    Returns
    -------
    numpy.ndarray or torch.Tensor
        Boolean array of shape ``values.shape[:-1]``.
    """
    ok = None
    for name, idx in zip(
        ("lmm_lookback_gyr", "lmm_log_mass"), MERGER_INDICES, strict=True
    ):
        lo, hi = VALID_RANGES[name]
        v = values[..., idx]
        inside = (v >= lo) & (v <= hi)
        ok = inside if ok is None else ok & inside
    assert ok is not None
    return ok


@dataclass
class Standardizer:
    """Per-column ``(x - mean) / scale``, like scikit-learn's ``StandardScaler``.

    Attributes
    ----------
    mean, scale : list of float
        Column means and standard deviations (a zero deviation is stored as 1).
    """

    mean: list[float] = field(default_factory=list)
    scale: list[float] = field(default_factory=list)

    @classmethod
    def fit(cls, x: np.ndarray) -> Standardizer:
        """Fit to the finite rows of ``x`` (N, D)."""
        x = np.asarray(x, dtype=np.float64)
        rows = np.isfinite(x).all(axis=1)
        if not rows.any():
            msg = "cannot fit a standardiser: no finite rows"
            raise ValueError(msg)
        mean = x[rows].mean(axis=0)
        scale = x[rows].std(axis=0)
        scale = np.where(scale > 1e-12, scale, 1.0)
        return cls([float(v) for v in mean], [float(v) for v in scale])

    def forward(self, x: ArrayLike) -> ArrayLike:
        """Standardise (works on numpy arrays and torch tensors)."""
        mean, scale = self._params(x)
        return (x - mean) / scale

    def inverse(self, z: ArrayLike) -> ArrayLike:
        """Undo :meth:`forward`."""
        mean, scale = self._params(z)
        return z * scale + mean

    def _params(self, like: ArrayLike) -> tuple[Any, Any]:
        if isinstance(like, torch.Tensor):
            return (
                torch.tensor(self.mean, dtype=like.dtype, device=like.device),
                torch.tensor(self.scale, dtype=like.dtype, device=like.device),
            )
        return np.asarray(self.mean), np.asarray(self.scale)

    def to_dict(self) -> dict[str, list[float]]:
        """Return a JSON-serialisable dict."""
        return {"mean": list(self.mean), "scale": list(self.scale)}

    @classmethod
    def from_dict(cls, d: Mapping[str, Any]) -> Standardizer:
        """Rebuild from :meth:`to_dict` output."""
        return cls([float(v) for v in d["mean"]], [float(v) for v in d["scale"]])


@dataclass
class TargetTransform:
    """Physical targets ↔ the cINN's standardised space.

    Forward: optional logit of the ex-situ fraction (clipped to ``[eps, 1 - eps]``), then
    per-target standardisation fitted on the training split. Inverse: the exact reverse
    (sigmoid after un-standardising). Merger sentinels pass through like any other value.

    Attributes
    ----------
    exsitu_transform : {"linear", "logit"}
        How the ex-situ fraction is modelled (method.md §4.2: linear in the authors' code).
    eps : float
        Clipping of the ex-situ fraction before the logit.
    scaler : Standardizer
        Scaling of the (possibly logit-transformed) targets.
    """

    exsitu_transform: Literal["linear", "logit"] = "linear"
    eps: float = 1e-3
    scaler: Standardizer = field(default_factory=Standardizer)

    @classmethod
    def fit(
        cls,
        y: np.ndarray,
        exsitu_transform: Literal["linear", "logit"] = "linear",
        eps: float = 1e-3,
    ) -> TargetTransform:
        """Fit the scaler to physical targets ``y`` (N, 3) of the training split.

        Parameters
        ----------
        y : numpy.ndarray
            Physical targets with sentinels (see :func:`encode_truth`).
        exsitu_transform : {"linear", "logit"}
            Ex-situ fraction transform.
        eps : float
            Clip for the logit.

        Returns
        -------
        TargetTransform
            The fitted transform.
        """
        tt = cls(exsitu_transform=exsitu_transform, eps=eps)
        tt.scaler = Standardizer.fit(tt._pre(np.asarray(y, dtype=np.float64)))
        return tt

    def _pre(self, y: ArrayLike) -> ArrayLike:
        if self.exsitu_transform != "logit":
            return y
        if isinstance(y, torch.Tensor):
            f = torch.clamp(y[..., 0], self.eps, 1.0 - self.eps)
            return torch.stack(
                [torch.log(f) - torch.log1p(-f), y[..., 1], y[..., 2]], -1
            )
        f = np.clip(y[..., 0], self.eps, 1.0 - self.eps)
        return np.stack([np.log(f) - np.log1p(-f), y[..., 1], y[..., 2]], axis=-1)

    def forward(self, y: ArrayLike) -> ArrayLike:
        """Map physical targets (..., 3) to the standardised network space."""
        return self.scaler.forward(self._pre(y))

    def log_det_forward(self, y: np.ndarray) -> np.ndarray:
        """Return log |det ∂forward/∂y| at physical targets ``y`` (..., 3).

        The change-of-variables term that turns a density in the network space into one in
        physical units: ``−Σ log scale`` plus, for the logit transform, ``−log f − log(1 − f)``
        of the ex-situ fraction ``f``; NaN where the logit clips ``f`` (outside
        [eps, 1 − eps]), as the map is not invertible there.

        Parameters
        ----------
        y : numpy.ndarray
            (..., 3) physical targets.

        Returns
        -------
        numpy.ndarray
            float64 (...) log-determinants.
        """
        y = np.asarray(y, dtype=np.float64)
        out = np.full(y.shape[:-1], -float(np.sum(np.log(self.scaler.scale))))
        if self.exsitu_transform == "logit":
            f = y[..., 0]
            with np.errstate(divide="ignore", invalid="ignore"):
                term = -np.log(f) - np.log1p(-f)
            inside = (f >= self.eps) & (f <= 1.0 - self.eps)
            out = out + np.where(inside, term, np.nan)
        return out

    def inverse(self, x: ArrayLike) -> ArrayLike:
        """Map network-space values (..., 3) back to physical targets."""
        u = self.scaler.inverse(x)
        if self.exsitu_transform != "logit":
            return u
        if isinstance(u, torch.Tensor):
            return torch.stack([torch.sigmoid(u[..., 0]), u[..., 1], u[..., 2]], -1)
        f = 1.0 / (1.0 + np.exp(-u[..., 0]))
        return np.stack([f, u[..., 1], u[..., 2]], axis=-1)

    def to_dict(self) -> dict[str, Any]:
        """Return a JSON-serialisable dict."""
        return {
            "targets": list(TARGETS),
            "exsitu_transform": self.exsitu_transform,
            "eps": self.eps,
            "scaler": self.scaler.to_dict(),
            "valid_ranges": {k: list(v) for k, v in VALID_RANGES.items()},
            "no_merger_values": dict(NO_MERGER_VALUES),
        }

    @classmethod
    def from_dict(cls, d: Mapping[str, Any]) -> TargetTransform:
        """Rebuild from :meth:`to_dict` output.

        Raises
        ------
        CheckpointError
            If the stored target list differs from this version's targets.
        """
        if tuple(d.get("targets", ())) != TARGETS:
            msg = f"target transform is for targets {d.get('targets')}, expected {list(TARGETS)}"
            raise CheckpointError(msg)
        return cls(
            exsitu_transform=d["exsitu_transform"],
            eps=float(d["eps"]),
            scaler=Standardizer.from_dict(d["scaler"]),
        )
