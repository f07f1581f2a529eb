"""Per-galaxy out-of-domain score against the model's training domain.

Method.md §7 scores a *set* A against a set B by ``d_k(x, B) / d_k(x, A∖x)``. A survey
catalogue scores one galaxy at a time, so the bundle adapts it: the denominator is the
local density of the training domain itself, measured at the galaxy's nearest reference
point,

    s(x) = d_k(x, R) / d_k(r*, R∖r*),   r* = the nearest point of R to x,

where R is a random subsample of the training representations kept in the bundle
(standardised feature-wise with R's own mean and deviation, as the method standardises the
features), ``d_k`` the distance to the k-th neighbour (``cfg.ood.k``, ``cfg.ood.metric``:
Manhattan in the method). A galaxy in a region as dense as the training set scores about 1
whatever the local density; one far from every training galaxy scores much more. As in the
method's A-A scaling, the score is then divided by its ``cfg.ood.quantile`` (95th)
percentile over held-out training representations (training galaxies not in R), so that
about 5 % of the training domain scores above 1 and ``ood_score > 1`` means "out of domain".
"""

from __future__ import annotations

import logging
from dataclasses import dataclass, field
from typing import Any, Literal

import numpy as np

from ergo_ray.errors import InputError
from ergo_ray.shared.knn import kth_neighbour_distance

log = logging.getLogger("ergo_ray")

__all__ = ["OodReference", "build_reference"]


@dataclass
class OodReference:
    """The reference set of the OOD score and its calibration.

    Attributes
    ----------
    reference : numpy.ndarray
        float32 (M, D) raw training representations (as stored in ``reference.npy``).
    self_kdist : numpy.ndarray
        float64 (M,) ``d_k(r, R∖r)`` in standardised space.
    mean, scale : numpy.ndarray
        (D,) standardisation of the features (fitted on R).
    k : int
        Neighbour rank.
    metric : {"l1", "l2"}
        Distance.
    norm : float
        The ``quantile`` of the raw score over held-out training representations.
    quantile : float
        The quantile used for ``norm``.
    """

    reference: np.ndarray
    self_kdist: np.ndarray
    mean: np.ndarray
    scale: np.ndarray
    k: int
    metric: Literal["l1", "l2"]
    norm: float
    quantile: float = 0.95
    _std_ref: np.ndarray | None = field(default=None, init=False, repr=False)

    def _standardise(self, reps: np.ndarray) -> np.ndarray:
        return ((np.asarray(reps, np.float64) - self.mean) / self.scale).astype(
            np.float32
        )

    def raw_score(self, reps: np.ndarray, device: Any = None) -> np.ndarray:
        """Score before the held-out normalisation.

        Parameters
        ----------
        reps : numpy.ndarray
            (N, D) representations.
        device : str or torch.device, optional
            Where to compute the distances.

        Returns
        -------
        numpy.ndarray
            float64 (N,) ``d_k(x, R) / d_k(r*, R∖r*)``; NaN for non-finite rows.
        """
        reps = np.asarray(reps, np.float32)
        out = np.full(reps.shape[0], np.nan)
        ok = np.isfinite(reps).all(axis=1)
        if not ok.any():
            return out
        if self._std_ref is None:
            self._std_ref = self._standardise(self.reference)
        ref = self._std_ref
        d, nearest = kth_neighbour_distance(
            self._standardise(reps[ok]),
            ref,
            self.k,
            metric=self.metric,
            device=device,
            return_index=True,
        )
        out[ok] = d / np.maximum(self.self_kdist[nearest], 1e-12)
        return out

    def score(self, reps: np.ndarray, device: Any = None) -> np.ndarray:
        """OOD score: > 1 means outside the training domain (≈5 % of it scores > 1).

        Parameters
        ----------
        reps : numpy.ndarray
            (N, D) representations.
        device : str or torch.device, optional
            Where to compute the distances.

        Returns
        -------
        numpy.ndarray
            float64 (N,) scores.
        """
        return self.raw_score(reps, device) / self.norm

    def to_dict(self) -> dict[str, Any]:
        """JSON-serialisable calibration (the arrays are stored as ``.npy``)."""
        return {
            "k": self.k,
            "metric": self.metric,
            "norm": self.norm,
            "quantile": self.quantile,
            "mean": [float(v) for v in self.mean],
            "scale": [float(v) for v in self.scale],
        }

    @classmethod
    def from_parts(
        cls, meta: dict[str, Any], reference: np.ndarray, self_kdist: np.ndarray
    ) -> OodReference:
        """Rebuild from :meth:`to_dict` output and the stored arrays."""
        return cls(
            reference=np.asarray(reference, np.float32),
            self_kdist=np.asarray(self_kdist, np.float64),
            mean=np.asarray(meta["mean"], np.float64),
            scale=np.asarray(meta["scale"], np.float64),
            k=int(meta["k"]),
            metric=meta["metric"],
            norm=float(meta["norm"]),
            quantile=float(meta.get("quantile", 0.95)),
        )


def _split_reference(
    train_reps: np.ndarray, n_reference: int, k: int, seed: int,
    fallback_holdout: np.ndarray | None,
) -> tuple[np.ndarray, np.ndarray]:
    """Return the reference subsample R and the held-out representations (finite rows).

    R has ``n_reference`` rows, fewer when that leaves under ``k + 1`` held out, and at
    least ``k + 1``; the fallback joins the held-out set when it is smaller than ``k + 1``.

    Raises
    ------
    InputError
        If there are fewer than ``k + 2`` finite training representations.
    """
    reps = np.asarray(train_reps, np.float32)
    reps = reps[np.isfinite(reps).all(axis=1)]
    n = reps.shape[0]
    if n < k + 2:
        msg = f"the OOD reference needs at least k + 2 = {k + 2} training representations, got {n}"
        raise InputError(msg)
    rng = np.random.default_rng(seed)
    order = rng.permutation(n)
    m = min(n_reference, n)
    if n - m < k + 1 and n >= 2 * (k + 1):
        m = n - (k + 1)
    m = max(m, k + 1)
    ref = reps[order[:m]]
    held = reps[order[m:]]
    if held.shape[0] < k + 1 and fallback_holdout is not None:
        fb = np.asarray(fallback_holdout, np.float32)
        held = np.concatenate([held, fb[np.isfinite(fb).all(axis=1)]])
    return ref, held


def build_reference(
    train_reps: np.ndarray,
    *,
    n_reference: int,
    k: int,
    metric: Literal["l1", "l2"] = "l1",
    quantile: float = 0.95,
    seed: int = 42,
    max_holdout: int = 20000,
    fallback_holdout: np.ndarray | None = None,
    device: Any = None,
) -> OodReference:
    """Draw the reference subsample and calibrate the score on held-out training reps.

    Parameters
    ----------
    train_reps : numpy.ndarray
        (N, D) training-split representations.
    n_reference : int
        Size of R (``cfg.cinn.n_ood_reference``); capped so that at least ``k + 1``
        training representations stay out of R for the calibration when possible.
    k : int
        Neighbour rank (``cfg.ood.k``).
    metric : {"l1", "l2"}
        Distance (``cfg.ood.metric``).
    quantile : float
        Calibration quantile (``cfg.ood.quantile``).
    seed : int
        Seed of the subsampling.
    max_holdout : int
        At most this many held-out representations are scored for the calibration.
    fallback_holdout : numpy.ndarray, optional
        Used for the calibration when too few training representations are left out of R
        (for example the validation split).
    device : str or torch.device, optional
        Where to compute the distances.

    Returns
    -------
    OodReference
        The reference set and its calibration.

    Raises
    ------
    InputError
        If there are too few training representations for the k-th neighbour.
    """
    ref, held = _split_reference(train_reps, n_reference, k, seed, fallback_holdout)
    held = held[:max_holdout]
    mean = ref.astype(np.float64).mean(axis=0)
    scale = ref.astype(np.float64).std(axis=0)
    scale = np.where(scale > 1e-8, scale, 1.0)
    std_ref = ((ref - mean) / scale).astype(np.float32)
    self_kdist = np.asarray(kth_neighbour_distance(
        std_ref, std_ref, k, metric=metric, exclude_self=True, device=device))
    out = OodReference(reference=ref, self_kdist=self_kdist, mean=mean, scale=scale, k=k,
                       metric=metric, norm=1.0, quantile=quantile)
    if held.shape[0] == 0:
        log.warning("no held-out training representations for the OOD calibration; "
                    "the score is not normalised")
        return out
    raw = out.raw_score(held, device)
    norm = float(np.nanquantile(raw, quantile))
    out.norm = norm if np.isfinite(norm) and norm > 0 else 1.0
    log.info("OOD reference: %d points, k=%d (%s), %s-quantile of %d held-out scores = %.3f",
             len(ref), k, metric, quantile, held.shape[0], out.norm)
    return out
