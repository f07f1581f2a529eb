"""The model bundle's Python API: :class:`ModelBundle` and :func:`load_bundle`.

The bundle's files, their format and their verification are in
:mod:`ergo_ray.shared.bundle_format`; everything here reads a verified bundle. Images reach
the encoder through :mod:`ergo_ray.infer.images`, the sbi-style posterior is
:mod:`ergo_ray.infer.posterior`, the default device :mod:`ergo_ray.infer.device`.
"""

from __future__ import annotations

import json
from collections.abc import Mapping, Sequence
from typing import TYPE_CHECKING, Any

import numpy as np
import torch
import yaml

from ergo_ray.errors import BadObjectError, CheckpointError, InputError
from ergo_ray.infer.device import default_device
from ergo_ray.infer.images import as_prepared, encode, prepare_cutouts
from ergo_ray.infer.posterior import Posterior, from_images, from_representations
from ergo_ray.io import storage as st
from ergo_ray.models.cinn import ConditionalINN, draw_physical, index_seeds
from ergo_ray.models.observables import DERIVED, observable_values, source_columns
from ergo_ray.models.targets import Standardizer, TargetTransform
from ergo_ray.models.widening import OodWidening
from ergo_ray.shared.bundle_format import WIDENING_FILE, load_npy, load_torch, read_verified
from ergo_ray.shared.encoder_file import encoder_from_bytes
from ergo_ray.shared.ood_score import OodReference
from ergo_ray.shared.summaries import summarize as _summarize
from ergo_ray.types import CINN_OBSERVABLES

if TYPE_CHECKING:
    from ergo_ray.config.schema import RunConfig, StorageConfig

__all__ = ["ModelBundle", "load_bundle"]


# ------------------------------------------------------------------------ the bundle
class ModelBundle:
    """A loaded model bundle (see :func:`load_bundle`).

    Attributes
    ----------
    url : str
        Where it was loaded from.
    model_id : str
        Content hash of the bundle's files.
    device : torch.device
        Where the networks run.
    config : RunConfig
        The resolved configuration of the training run.
    input_size : int
        Side of the prepared stamps the encoder expects.
    rep_dim : int
        Length of the representation.
    observables : tuple of str
        Catalogue columns appended to the representation as the cINN's condition
        (``cinn.observables`` of the training run; empty for the paper's representation-only
        condition).
    metrics : dict
        Test-split calibration and accuracy (``metrics.json``).
    has_baseline : bool
        Whether the (log M*, z) baseline is present.
    widening : OodWidening or None
        The shift-aware widening applied to every cINN posterior (``cinn.widening``).
    """

    def __init__(
        self,
        url: str,
        manifest: Mapping[str, Any],
        files: Mapping[str, bytes],
        device: torch.device,
    ) -> None:
        from ergo_ray.config.schema import RunConfig

        self.url = url
        self.model_id = str(manifest["model_id"])
        self.device = device
        try:
            self.config: RunConfig = RunConfig.model_validate(
                yaml.safe_load(files["config.yaml"]) or {}
            )
            tr = json.loads(files["transforms.json"])
            self.metrics: dict[str, Any] = json.loads(files["metrics.json"])
            self.transform = TargetTransform.from_dict(tr["targets"])
            self.input_size = int(tr["input_size"])
            self.rep_dim = int(tr["rep_dim"])
            self.observables: tuple[str, ...] = tuple(tr.get("observables") or ())
            unknown = sorted(set(self.observables) - set(CINN_OBSERVABLES))
            if unknown:
                msg = f"unknown cINN observables {unknown}"
                raise ValueError(msg)
            self.preprocess: dict[str, Any] = dict(tr.get("preprocess") or {})
            self.ood = OodReference.from_parts(
                tr["ood"],
                load_npy(files["reference.npy"], "reference.npy"),
                load_npy(files["reference_kdist.npy"], "reference_kdist.npy"),
            )
            base_scaler = tr.get("baseline_condition")
            self.widening: OodWidening | None = (
                OodWidening.from_dict(json.loads(files[WIDENING_FILE]))
                if WIDENING_FILE in files else None)
        except CheckpointError:
            raise
        except Exception as err:
            msg = f"{st.redact(url)}: bundle metadata is invalid: {err}"
            raise CheckpointError(msg) from err
        encoder, self.encoder_meta = encoder_from_bytes(files["encoder.pt"], "encoder.pt")
        self.encoder = encoder.to(device)
        self.cinn = ConditionalINN.from_payload(
            load_torch(files["cinn.pt"], "cinn.pt")).to(device).eval()
        self.baseline: ConditionalINN | None = None
        self.baseline_scaler: Standardizer | None = None
        if "baseline.pt" in files and base_scaler:
            self.baseline = ConditionalINN.from_payload(
                load_torch(files["baseline.pt"], "baseline.pt")).to(device).eval()
            self.baseline_scaler = Standardizer.from_dict(base_scaler)
        self.batch_size = int(self.config.infer.batch_size)
        self.kde_grid = int(self.config.infer.kde_grid)
        self.mixed_precision = bool(self.config.infer.mixed_precision)

    @property
    def has_baseline(self) -> bool:
        """Whether the bundle holds the (log M*, z) baseline."""
        return self.baseline is not None

    def __repr__(self) -> str:
        return (
            f"ModelBundle(model_id={self.model_id!r}, input_size={self.input_size}, "
            f"device={self.device}, observables={list(self.observables)}, "
            f"baseline={self.has_baseline}, widening={self.widening is not None})"
        )

    # ---------------------------------------------------------------- images
    def prepare(self, images: np.ndarray) -> np.ndarray:
        """Raw float32 (N, 3, H, W) g, r, i cutouts → prepared uint8 (N, 3, S, S).

        Raises
        ------
        BadObjectError
            Naming the index of the first cutout that cannot be prepared.
        """
        return prepare_cutouts(images, self.input_size, self.preprocess)

    def represent(
        self, images: np.ndarray, batch_size: int | None = None,
        mixed_precision: bool | None = None,
    ) -> np.ndarray:
        """Representations of images.

        Parameters
        ----------
        images : numpy.ndarray
            Raw cutouts, float32 (N, 3, H, W), bands g, r, i in the readers' flux unit (ZP
            27), preprocessed with the bundle's settings; or prepared uint8 (N, 3, S, S)
            (channels i, r, g) at the bundle's input size.
        batch_size : int, optional
            Images per forward pass (default ``config.infer.batch_size``).
        mixed_precision : bool, optional
            Autocast the encoder to float16 on CUDA (default
            ``config.infer.mixed_precision``).

        Returns
        -------
        numpy.ndarray
            float32 (N, rep_dim).
        """
        prepared = as_prepared(images, self.input_size, self.preprocess)
        amp = self.mixed_precision if mixed_precision is None else bool(mixed_precision)
        return encode(self.encoder, prepared, self.rep_dim, self.device,
                      int(batch_size or self.batch_size), amp)

    # ---------------------------------------------------------------- posterior
    def _reps(self, images_or_reps: np.ndarray) -> np.ndarray:
        arr = np.asarray(images_or_reps)
        if arr.ndim == 4:
            return self.represent(arr)
        if arr.ndim == 2 and arr.shape[1] == self.rep_dim:
            return arr.astype(np.float32, copy=False)
        msg = (
            f"expected images (N, 3, H, W) or representations (N, {self.rep_dim}), got "
            f"shape {arr.shape}"
        )
        raise InputError(msg)

    def _seeds(self, n: int, seed: int, seeds: np.ndarray | None) -> np.ndarray:
        if seeds is None:
            return index_seeds(seed, n)
        s = np.asarray(seeds)
        if s.shape != (n,) or s.dtype.kind not in "iu":
            msg = f"seeds must be an integer array of shape ({n},), got {s.dtype} {s.shape}"
            raise InputError(msg)
        return s

    def condition(
        self, reps: np.ndarray, observables: Mapping[str, Any] | None = None
    ) -> np.ndarray:
        """Return the cINN's condition: the representations and the model's observables.

        Parameters
        ----------
        reps : numpy.ndarray
            float32 (N, rep_dim) representations.
        observables : mapping of str to array-like, optional
            (N,) values of each column in :attr:`observables` (for example
            ``{"redshift": z, "i_mag": m}``; a size observable can instead be given by its
            sources, ``r50_px``/``r90_px`` and ``redshift``, see
            :mod:`ergo_ray.models.observables`); other keys are ignored. A NaN makes that
            object's condition non-finite (it cannot be sampled), not the call fail.

        Returns
        -------
        numpy.ndarray
            float32 (N, rep_dim + len(observables)).

        Raises
        ------
        InputError
            If one of the model's observables is missing or has the wrong length.
        """
        reps = np.asarray(reps, np.float32)
        given = dict(observables or {})
        missing = [c for c in self.observables
                   if c not in given and not set(DERIVED.get(c, (c,))) <= set(given)]
        if missing:
            msg = (
                f"{st.redact(self.url)}: this model is conditioned on "
                f"{', '.join(self.observables)}; pass observables={{name: (N,) values}} "
                f"with the images or representations (missing {', '.join(missing)})"
            )
            raise InputError(msg)
        for c in {*self.observables, *source_columns(self.observables)} & set(given):
            size = np.asarray(given[c]).size
            if size != len(reps):
                msg = f"observable {c!r} has {size} values for {len(reps)} objects"
                raise InputError(msg)
        values = observable_values(self.observables, given, len(reps))
        cols = [reps]
        for c in self.observables:
            v = values[c]
            if v.shape != (len(reps),):
                msg = f"observable {c!r} has {v.size} values for {len(reps)} objects"
                raise InputError(msg)
            cols.append(v[:, None].astype(np.float32))
        return np.concatenate(cols, axis=1)

    def _sample(
        self, net: ConditionalINN, cond: np.ndarray, n_samples: int, seeds: np.ndarray
    ) -> np.ndarray:
        bad = ~np.isfinite(cond).all(axis=1)
        if bad.any():
            i = int(np.flatnonzero(bad)[0])
            what = "".join(f", {c}" for c in self.observables)
            msg = f"object {i}: non-finite condition (representation{what}) — cannot sample"
            raise BadObjectError(
                msg, object_id=str(i), reason="nonfinite_condition"
            )
        out = self.draw_samples(net, cond, n_samples, seeds).cpu().numpy()
        bad_rows = ~np.isfinite(out).all(axis=(1, 2))
        if bad_rows.any():
            i = int(np.flatnonzero(bad_rows)[0])
            msg = f"object {i}: the cINN produced non-finite posterior samples"
            raise BadObjectError(msg, object_id=str(i), reason="nonfinite_posterior")
        return out

    def draw_samples(
        self, net: ConditionalINN, cond: np.ndarray, n_samples: int, seeds: np.ndarray,
        ood: np.ndarray | None = None,
    ) -> torch.Tensor:
        """Physical posterior samples of finite conditions, unchecked (non-finite stays so).

        :meth:`sample_posterior` and :class:`~ergo_ray.infer.posterior.Posterior` (with it
        the catalogue) draw here: :func:`~ergo_ray.models.cinn.draw_physical`, widened.

        Parameters
        ----------
        net : ConditionalINN
            :attr:`cinn` or :attr:`baseline`.
        cond : numpy.ndarray
            float32 (N, C) finite conditions.
        n_samples : int
            Samples per object.
        seeds : numpy.ndarray
            int64 (N,) per-object seeds.
        ood : numpy.ndarray, optional
            (N,) OOD scores for the widening of :attr:`cinn` samples (default: scored from
            the conditions' representations).

        Returns
        -------
        torch.Tensor
            float32 (N, n_samples, 3) on :attr:`device`.
        """
        out = draw_physical(net, self.transform, cond, n_samples, seeds, self.device)
        if net is self.cinn:
            out = self.widen(out, cond[:, : self.rep_dim], ood=ood)
        return out

    # ---------------------------------------------------------------- sbi-style posterior
    def posterior_from_images(
        self,
        images: np.ndarray,
        *,
        observables: Mapping[str, Any] | None = None,
        object_ids: Sequence[str] | None = None,
    ) -> Posterior:
        """Return the posterior given images (:func:`ergo_ray.infer.posterior.from_images`)."""
        return from_images(self, images, observables=observables, object_ids=object_ids)

    def posterior_from_representations(
        self,
        reps: np.ndarray,
        *,
        observables: Mapping[str, Any] | None = None,
        object_ids: Sequence[str] | None = None,
    ) -> Posterior:
        """Return the posterior given representations (:mod:`ergo_ray.infer.posterior`)."""
        return from_representations(self, reps, observables=observables, object_ids=object_ids)

    def sample_posterior(
        self,
        images_or_reps: np.ndarray,
        n_samples: int | None = None,
        seed: int = 0,
        seeds: np.ndarray | None = None,
        *,
        observables: Mapping[str, Any] | None = None,
    ) -> np.ndarray:
        """Posterior samples of the three targets.

        Parameters
        ----------
        images_or_reps : numpy.ndarray
            Images (see :meth:`represent`) or representations (N, rep_dim).
        n_samples : int, optional
            Samples per object (default ``config.infer.n_samples``).
        seed : int
            Run seed; object ``i`` of this call gets seed ``index_seeds(seed, N)[i]``.
        seeds : numpy.ndarray, optional
            int64 (N,) per-object seeds (for example
            :func:`ergo_ray.models.cinn.object_seeds` of the object IDs), overriding
            ``seed``: an object's samples then do not depend on the batch it is in.
        observables : mapping of str to array-like, optional
            (N,) catalogue values of the columns the model is conditioned on besides the
            representation (:attr:`observables`, e.g. ``{"redshift": z, "i_mag": m}``).

        Returns
        -------
        numpy.ndarray
            float32 (N, n_samples, 3): ex-situ fraction, lookback time [Gyr], log10 merger
            mass [Msun]; samples meaning "no major merger" keep their out-of-range values.

        Raises
        ------
        InputError
            If the input has the wrong shape, or one of the observables is missing.
        BadObjectError
            If an object's representation or observables are not finite (``reason``
            ``nonfinite_condition``) or its samples are not (``nonfinite_posterior``).
        """
        cond = self.condition(self._reps(images_or_reps), observables)
        return self.sample_condition(cond, n_samples, seed, seeds)

    def sample_condition(
        self,
        cond: np.ndarray,
        n_samples: int | None = None,
        seed: int = 0,
        seeds: np.ndarray | None = None,
    ) -> np.ndarray:
        """Draw posterior samples from ready-made conditions (:meth:`condition`).

        Parameters and result as :meth:`sample_posterior`, with ``cond`` float32
        (N, rep_dim + len(observables)) in place of the images and observables.
        """
        cond = np.asarray(cond, np.float32)
        width = self.rep_dim + len(self.observables)
        if cond.ndim != 2 or cond.shape[1] != width:
            msg = f"expected conditions (N, {width}), got shape {cond.shape}"
            raise InputError(msg)
        n = int(n_samples or self.config.infer.n_samples)
        return self._sample(self.cinn, cond, n, self._seeds(len(cond), seed, seeds))

    def baseline_sample(
        self,
        log_mstar: np.ndarray,
        redshift: np.ndarray,
        n_samples: int | None = None,
        seed: int = 0,
        seeds: np.ndarray | None = None,
    ) -> np.ndarray:
        """Posterior samples of the (log M*, z) baseline (same layout as :meth:`sample_posterior`).

        Raises
        ------
        CheckpointError
            If the bundle was trained without ``--baseline``.
        """
        if self.baseline is None or self.baseline_scaler is None:
            msg = f"{st.redact(self.url)}: this bundle has no baseline (train-cinn --baseline)"
            raise CheckpointError(msg)
        cond = np.stack(
            [np.asarray(log_mstar, np.float64), np.asarray(redshift, np.float64)], 1
        )
        cond = np.asarray(self.baseline_scaler.forward(cond), np.float32)
        n = int(n_samples or self.config.infer.n_samples)
        return self._sample(self.baseline, cond, n, self._seeds(len(cond), seed, seeds))

    def widen(self, samples: Any, reps: np.ndarray | None = None,
              ood: np.ndarray | None = None) -> Any:
        """Apply the bundle's shift-aware widening (``cinn.widening``; identity without it).

        Parameters
        ----------
        samples : numpy.ndarray or torch.Tensor
            (N, S, 3) physical samples of the cINN.
        reps : numpy.ndarray, optional
            (N, rep_dim) representations, to score when ``ood`` is not given.
        ood : numpy.ndarray, optional
            (N,) OOD scores (:meth:`ood_score`).

        Returns
        -------
        numpy.ndarray or torch.Tensor
            The widened samples (the input itself when the bundle has no widening).
        """
        if self.widening is None:
            return samples
        if ood is None:
            if reps is None:
                msg = "widen needs the representations or the OOD scores"
                raise InputError(msg)
            ood = self.ood.score(np.asarray(reps, np.float32), device=self.device)
        return self.widening.apply(samples, np.asarray(ood, np.float64))

    def summarize(self, samples: np.ndarray) -> dict[str, np.ndarray]:
        """Posterior summaries: the catalogue's ``{T}_map`` … ``p_no_major_merger`` columns."""
        return _summarize(samples, grid=self.kde_grid, device=self.device)

    def ood_score(self, reps: np.ndarray) -> np.ndarray:
        """Per-galaxy OOD score against the training domain (> 1: out of domain)."""
        return self.ood.score(
            self._reps(reps) if np.asarray(reps).ndim == 4 else reps, device=self.device
        )


def load_bundle(
    url: str,
    storage: StorageConfig | None = None,
    device: str | torch.device | None = None,
) -> ModelBundle:
    """Load and verify a model bundle.

    Parameters
    ----------
    url : str
        Bundle folder (local path, ``file://`` or ``s3://``).
    storage : StorageConfig, optional
        Storage settings.
    device : str or torch.device, optional
        Default: :func:`default_device` (CUDA if available, else the CPU, with a warning
        when Ray assigned this process a GPU that torch cannot use).

    Returns
    -------
    ModelBundle
        The loaded bundle.

    Raises
    ------
    CheckpointError
        If the bundle is incomplete, a file fails its sha256 check, or the weights do not fit.
    """
    dev = torch.device(device) if device else default_device()
    manifest, files = read_verified(url, storage)
    return ModelBundle(url, manifest, files, dev)
