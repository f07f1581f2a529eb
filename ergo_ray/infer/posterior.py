"""The posterior of a set of galaxies, with the interface of sbi: sample, log_prob, map.

:func:`from_images` and :func:`from_representations` (also methods of
:class:`~ergo_ray.infer.bundle.ModelBundle`) return a
:class:`Posterior` conditioned on N galaxies. θ is (ex-situ fraction, lookback time of the last
major merger [Gyr], log10 its stellar mass [Msun]); samples meaning "no major merger" keep
their out-of-range values, as in :meth:`~ergo_ray.infer.bundle.ModelBundle.sample_posterior`.

One bad galaxy never costs the others: a galaxy that cannot be prepared, or whose condition
or samples are not finite, gets NaN rows and an entry in :attr:`Posterior.errors` naming its
``object_id`` and the reason.
"""

from __future__ import annotations

import math
from collections.abc import Mapping, Sequence
from typing import TYPE_CHECKING, Any

import numpy as np
import torch

from ergo_ray.errors import BadObjectError, InputError
from ergo_ray.io.schemas import posterior_summary_columns
from ergo_ray.models.cinn import object_seeds
from ergo_ray.types import TARGETS

if TYPE_CHECKING:
    from ergo_ray.infer.bundle import ModelBundle

__all__ = ["Posterior", "from_images", "from_representations"]

_LOG_2PI = math.log(2.0 * math.pi)


class Posterior:
    """p(θ | x) of N galaxies (make one with a :class:`~ergo_ray.infer.bundle.ModelBundle`).

    The one path from conditions to samples and summaries: the catalogue's model actor
    (:class:`~ergo_ray.infer.predictors.PosteriorPredictor`) computes its rows with
    :meth:`summaries` and :meth:`ood_score`.

    Parameters
    ----------
    bundle : ModelBundle
        The model.
    cond : numpy.ndarray
        float32 (N, rep_dim + len(observables)) conditions; a non-finite row is a bad galaxy.
    object_ids : sequence of str
        (N,) IDs; they name the galaxies in :attr:`errors` and seed their samples.
    errors : dict of str to str, optional
        Galaxies already known to be bad (for example: could not be prepared), as
        ``object_id`` → ``"<reason>: <message>"``.
    ood : numpy.ndarray, optional
        (N,) OOD scores of the representations, when already computed (default: scored
        by the bundle on first use).
    observed_in : str
        Where the observables came from, for the message of a galaxy that lacks one.

    Attributes
    ----------
    object_ids : list of str
        The galaxies, in row order.
    """

    def __init__(self, bundle: ModelBundle, cond: np.ndarray, object_ids: Sequence[str],
                 errors: Mapping[str, str] | None = None, *, ood: np.ndarray | None = None,
                 observed_in: str = "the observables") -> None:
        self.bundle = bundle
        self.cond = np.asarray(cond, np.float32)
        self.object_ids = [str(o) for o in object_ids]
        if len(self.object_ids) != len(self.cond):
            msg = f"{len(self.object_ids)} object_ids for {len(self.cond)} galaxies"
            raise InputError(msg)
        self._ood = None if ood is None else np.asarray(ood, np.float64)
        known = dict(errors or {})
        self._failures: list[tuple[str, str] | None] = [
            _reason_and_message(known[o]) if o in known else None for o in self.object_ids]
        for i in np.flatnonzero(~np.isfinite(self.cond).all(axis=1)):
            if self._failures[i] is None:
                self._failures[i] = ("nonfinite_condition", self._condition_fault(i, observed_in))

    def _condition_fault(self, i: int, observed_in: str) -> str:
        """Why galaxy ``i``'s condition is not finite: its representation or an observable."""
        b = self.bundle
        if not np.isfinite(self.cond[i, : b.rep_dim]).all():
            return "model failed: non-finite representation"
        lacking = [c for c, v in zip(b.observables, self.cond[i, b.rep_dim :], strict=True)
                   if not np.isfinite(v)]
        return (f"no {', '.join(lacking)} in {observed_in} (the model is conditioned on "
                f"{', '.join(b.observables)})")

    @property
    def failures(self) -> list[tuple[str, str] | None]:
        """Per galaxy, in row order: ``(reason, message)`` of its error, or None."""
        return list(self._failures)

    @property
    def errors(self) -> dict[str, str]:
        """``object_id`` → ``"<reason>: <message>"``, for every galaxy whose rows are NaN."""
        return {o: f"{f[0]}: {f[1]}" for o, f in zip(self.object_ids, self._failures,
                                                      strict=True) if f is not None}

    @property
    def ok(self) -> np.ndarray:
        """(N,) bool: the galaxies with a usable condition and no recorded error."""
        return np.array([f is None for f in self._failures], dtype=bool)

    def __len__(self) -> int:
        return len(self.object_ids)

    def ood_score(self) -> np.ndarray:
        """Return float64 (N,) OOD scores of the representations (> 1: out of domain)."""
        if self._ood is None:
            self._ood = np.asarray(
                self.bundle.ood_score(self.cond[:, : self.bundle.rep_dim]), np.float64)
        return self._ood

    def _draw(self, n: int | None, seed: int) -> torch.Tensor:
        """(N, n, 3) samples on the bundle's device; NaN rows for the bad galaxies."""
        b = self.bundle
        n = int(n or b.config.infer.n_samples)
        out = torch.full((len(self), n, 3), float("nan"), device=b.device)
        ok = self.ok
        if ok.any():
            seeds = object_seeds(self.object_ids, seed)[ok]
            ood = None if b.widening is None else self.ood_score()[ok]
            rows = torch.from_numpy(ok).to(b.device)
            out[rows] = b.draw_samples(b.cinn, self.cond[ok], n, seeds, ood=ood)
        finite = torch.isfinite(out).all(dim=2).all(dim=1).cpu().numpy()
        for i in np.flatnonzero(ok & ~finite):
            self._failures[i] = ("nonfinite_posterior",
                                 "model failed: non-finite posterior samples")
            out[i] = float("nan")
        return out

    def sample(self, n: int | None = None, seed: int = 0) -> np.ndarray:
        """Draw posterior samples.

        Parameters
        ----------
        n : int, optional
            Samples per galaxy (default ``config.infer.n_samples`` of the bundle).
        seed : int
            Run seed; a galaxy's samples depend on it and on its ``object_id`` only.

        Returns
        -------
        numpy.ndarray
            float32 (N, n, 3) physical samples; NaN rows for the galaxies in :attr:`errors`
            (a galaxy whose samples are not finite joins it).
        """
        return self._draw(n, seed).cpu().numpy()

    def summaries(self, n: int | None = None, seed: int = 0) -> dict[str, np.ndarray]:
        """Return the catalogue's posterior summaries of :meth:`sample`'s samples.

        Parameters
        ----------
        n : int, optional
            Samples per galaxy (default ``config.infer.n_samples``).
        seed : int
            Run seed of the samples.

        Returns
        -------
        dict of str to numpy.ndarray
            :func:`~ergo_ray.io.schemas.posterior_summary_columns` → float64 (N,); NaN for
            the galaxies in :attr:`errors`.
        """
        samples = self._draw(n, seed)
        out = {c: np.full(len(self), np.nan) for c in posterior_summary_columns()}
        ok = self.ok
        if ok.any():
            rows = torch.from_numpy(ok).to(samples.device)
            for c, v in self.bundle.summarize(samples[rows]).items():
                out[c][ok] = np.asarray(v, np.float64)
        return out

    def log_prob(self, theta: np.ndarray) -> np.ndarray:
        """Log posterior density of θ in physical units, exact (the cINN is invertible).

        Parameters
        ----------
        theta : numpy.ndarray
            (N, 3) one θ per galaxy, or (N, S, 3) S values per galaxy.

        Returns
        -------
        numpy.ndarray
            float64 (N,) or (N, S): ``log p(θ | x)`` with θ's density in (fraction, Gyr, dex);
            NaN for the galaxies in :attr:`errors` and where θ is outside the support (an
            ex-situ fraction the target transform clips).
        """
        b = self.bundle
        th = np.asarray(theta, np.float64)
        squeeze = th.ndim == 2
        if squeeze:
            th = th[:, None, :]
        if th.ndim != 3 or th.shape[0] != len(self) or th.shape[2] != 3:
            msg = f"theta must be ({len(self)}, 3) or ({len(self)}, S, 3), got {th.shape}"
            raise InputError(msg)
        s = th.shape[1]
        out = np.full(th.shape[:2], np.nan)
        ok = self.ok & np.isfinite(th).all(axis=(1, 2))
        if ok.any():
            y = np.asarray(b.transform.forward(th[ok]), np.float32).reshape(-1, 3)
            c = np.repeat(self.cond[ok], s, axis=0)
            with torch.inference_mode():
                z, log_jac = b.cinn(torch.from_numpy(y).to(b.device),
                                    torch.from_numpy(c).to(b.device))
            log_z = -0.5 * (z.double() ** 2).sum(dim=1) - 1.5 * _LOG_2PI
            log_y = (log_z + log_jac.double()).cpu().numpy().reshape(-1, s)
            out[ok] = log_y + b.transform.log_det_forward(th[ok])
        return out[:, 0] if squeeze else out

    def map(self, n: int | None = None, seed: int = 0) -> np.ndarray:
        """Maximum a posteriori θ per galaxy, from the KDE of its samples (as the catalogue).

        Parameters
        ----------
        n : int, optional
            Samples per galaxy for the KDE (default ``config.infer.n_samples``).
        seed : int
            Run seed of the samples.

        Returns
        -------
        numpy.ndarray
            float64 (N, 3): the catalogue's ``{T}_map`` columns; NaN rows for the galaxies
            in :attr:`errors`.
        """
        summary = self.summaries(n, seed)
        return np.stack([summary[f"{t}_map"] for t in TARGETS], axis=1)


def _reason_and_message(error: str) -> tuple[str, str]:
    reason, _, message = error.partition(": ")
    return reason, message


def default_ids(n: int, object_ids: Sequence[str] | None) -> list[str]:
    """Return ``object_ids`` as strings, or ``"0"`` … ``"N-1"`` when none are given."""
    return [str(i) for i in range(n)] if object_ids is None else [str(o) for o in object_ids]


def from_representations(
    bundle: ModelBundle,
    reps: np.ndarray,
    *,
    observables: Mapping[str, Any] | None = None,
    object_ids: Sequence[str] | None = None,
) -> Posterior:
    """Return the posterior of galaxies given their representations.

    Parameters
    ----------
    bundle : ModelBundle
        The model.
    reps : numpy.ndarray
        (N, rep_dim) representations (:meth:`represent`, or a catalogue's column).
    observables : mapping of str to array-like, optional
        (N,) values of each column in :attr:`observables`.
    object_ids : sequence of str, optional
        (N,) IDs naming the galaxies in :attr:`Posterior.errors` and seeding their
        samples (default ``"0"`` … ``"N-1"``).

    Returns
    -------
    Posterior
        With ``sample``, ``log_prob`` and ``map``.

    Raises
    ------
    InputError
        If ``reps`` is not (N, rep_dim), or an observable or ID is missing.
    """
    arr = np.asarray(reps)
    if arr.ndim != 2 or arr.shape[1] != bundle.rep_dim:
        msg = f"expected representations (N, {bundle.rep_dim}), got shape {arr.shape}"
        raise InputError(msg)
    ids = default_ids(len(arr), object_ids)
    return Posterior(bundle, bundle.condition(arr, observables), ids)


def from_images(
    bundle: ModelBundle,
    images: np.ndarray,
    *,
    observables: Mapping[str, Any] | None = None,
    object_ids: Sequence[str] | None = None,
) -> Posterior:
    """Return the posterior of galaxies given their images.

    Parameters
    ----------
    bundle : ModelBundle
        The model.
    images : numpy.ndarray
        Raw float32 (N, 3, H, W) g, r, i cutouts (prepared here, one by one: a cutout
        that cannot be prepared is recorded in :attr:`Posterior.errors`), or prepared
        uint8 (N, 3, S, S) stamps.
    observables : mapping of str to array-like, optional
        (N,) values of each column in :attr:`observables`.
    object_ids : sequence of str, optional
        As :func:`from_representations`.

    Returns
    -------
    Posterior
        With ``sample``, ``log_prob`` and ``map``.
    """
    arr = np.asarray(images)
    if arr.ndim != 4 or arr.shape[1] != 3:
        msg = f"images must be (N, 3, H, W), got shape {arr.shape}"
        raise InputError(msg)
    ids = default_ids(len(arr), object_ids)
    if len(ids) != len(arr):
        msg = f"{len(ids)} object_ids for {len(arr)} images"
        raise InputError(msg)
    errors: dict[str, str] = {}
    reps = np.full((len(arr), bundle.rep_dim), np.nan, np.float32)
    if arr.dtype == np.uint8:
        reps[:] = bundle.represent(arr)
    else:
        prepared = np.zeros((len(arr), 3, bundle.input_size, bundle.input_size), np.uint8)
        ok = np.ones(len(arr), bool)
        for i in range(len(arr)):
            try:
                prepared[i] = bundle.prepare(arr[i : i + 1])[0]
            except BadObjectError as err:
                ok[i] = False
                errors[ids[i]] = f"{err.reason}: {err}"
        if ok.any():
            reps[ok] = bundle.represent(prepared[ok])
    posterior = Posterior(bundle, bundle.condition(reps, observables), ids, errors)
    return posterior
