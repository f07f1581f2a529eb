"""The model actor of ``ergo-ray catalog``: :class:`PosteriorPredictor`, a Ray Data UDF.

It takes the reader stage's rows (:mod:`ergo_ray.infer.readers`) and returns the posterior
catalogue's columns (:func:`ergo_ray.io.schemas.posterior_schema`) plus ``_unit``, ``_seq``,
``_unit_rows`` and ``_node`` / ``_actor`` (where it ran). Its rows come from the sbi-style
:class:`~ergo_ray.infer.posterior.Posterior`, the same path as the Python API's.
"""

from __future__ import annotations

import json
import logging
import os
import time
from collections.abc import Mapping
from typing import TYPE_CHECKING, Any

import numpy as np
import pyarrow as pa

from ergo_ray.infer.readers import ID_COLUMNS, INTERNAL_COLUMNS
from ergo_ray.io import storage
from ergo_ray.io.schemas import posterior_schema, posterior_summary_columns
from ergo_ray.types import CINN_OBSERVABLES

if TYPE_CHECKING:
    from ergo_ray.config.schema import StorageConfig

log = logging.getLogger("ergo_ray")


def output_schema(keep_representation: bool, rep_dim: int = 256) -> pa.Schema:
    """Return the model stage's output schema: the catalogue's columns plus bookkeeping."""
    base = posterior_schema(keep_representation, rep_dim)
    extra = [
        pa.field("_unit", pa.string()),
        pa.field("_seq", pa.int32()),
        pa.field("_unit_rows", pa.int32()),
        pa.field("_node", pa.string()),
        pa.field("_actor", pa.string()),
    ]
    return pa.schema([f.with_nullable(True) for f in base] + extra)


class OodOnDevice:
    """An :class:`~ergo_ray.shared.ood_score.OodScorer` whose reference set lives on a device.

    Computes exactly what ``OodScorer.score`` computes (standardise in float64, exact
    k-NN on float32 with ``torch.cdist`` + ``topk``, divide by the nearest reference
    point's own k-th distance and the held-out norm), from representations that are
    already on the device, without copying the reference set for every batch.

    Parameters
    ----------
    ood : OodScorer
        The bundle's scorer.
    device : torch.device
        Where to keep the reference set.
    """

    def __init__(self, ood: Any, device: Any) -> None:
        import torch

        self.ood, self.device = ood, device
        self.mean = torch.as_tensor(np.asarray(ood.mean, np.float64), device=device)
        self.scale = torch.as_tensor(np.asarray(ood.scale, np.float64), device=device)
        ref = np.asarray(ood.reference, np.float64)
        self.ref = torch.as_tensor(ref, device=device).sub_(self.mean).div_(self.scale).float()
        self.self_kdist = np.asarray(ood.self_kdist, np.float64)

    def score(self, reps: Any) -> np.ndarray:
        """Return float64 (N,) OOD scores of (N, D) representations on the device."""
        import torch

        from ergo_ray.shared.knn import kth_neighbour_distance

        reps = reps.to(self.device, torch.float64)
        out = np.full(reps.shape[0], np.nan)
        ok = torch.isfinite(reps).all(dim=1)
        if not bool(ok.any()):
            return out
        q = reps[ok].sub(self.mean).div(self.scale).float()
        d, nearest = kth_neighbour_distance(
            q,
            self.ref,
            self.ood.k,
            metric=self.ood.metric,
            device=self.device,
            return_index=True,
            backend="torch",
        )
        kd = self.self_kdist[nearest]
        out[ok.cpu().numpy()] = d / np.maximum(kd, 1e-12) / self.ood.norm
        return out


class PosteriorPredictor:
    """Ray Data actor UDF: representation → posterior samples → summaries → OOD score.

    The model bundle is loaded once per actor, in the constructor. Each call processes one
    batch in a single pass on the actor's device; rows that arrive with an ``error`` pass
    through with NaN summaries. Posterior seeds are derived from ``(seed, object_id)``
    (:func:`ergo_ray.models.cinn.object_seeds`), so a galaxy's values do not depend on the
    batch it lands in, on the actor or on retries.

    Parameters
    ----------
    model : str
        Model bundle URL.
    storage_cfg : StorageConfig or None
        Storage settings.
    n_samples : int
        Posterior samples per galaxy.
    seed : int
        Run seed.
    keep_representation : bool
        Also return the 256-d representation.
    mixed_precision : bool
        Autocast the encoder to float16 on CUDA.
    threads : int
        Torch intra-op threads on CPU (the actor's CPU share).
    actors_url : str, optional
        Folder where the actor writes ``<node>-<pid>.json`` (node id, pid, device) as it
        starts.
    device : str, optional
        Where the model runs: ``"cuda"`` for an actor that reserved a GPU, ``"cpu"`` for
        one that did not (Ray leaves the node's GPUs visible to it); default CUDA if
        available.
    """

    def __init__(
        self,
        model: str,
        storage_cfg: StorageConfig | None,
        n_samples: int,
        seed: int,
        keep_representation: bool = False,
        mixed_precision: bool = True,
        threads: int = 1,
        actors_url: str | None = None,
        device: str | None = None,
    ) -> None:
        import torch

        from ergo_ray.infer.bundle import load_bundle

        self.bundle = load_bundle(model, storage_cfg, device=device)
        if self.bundle.device.type == "cpu":
            torch.set_num_threads(max(1, int(threads)))
        self.n_samples = int(n_samples)
        self.seed = int(seed)
        self.keep_representation = bool(keep_representation)
        self.mixed_precision = bool(mixed_precision)
        self.schema = output_schema(self.keep_representation, int(self.bundle.rep_dim))
        self.node_id, self.actor_id = _where()
        self.rows = 0
        self._ood_dev: OodOnDevice | None = None
        if self.bundle.device.type == "cuda":
            torch.backends.cudnn.benchmark = True  # fixed input size: autotune once
            self.bundle.encoder.to(memory_format=torch.channels_last)
            # the OOD reference set stays on the device, not re-sent with every batch
            self._ood_dev = OodOnDevice(self.bundle.ood, self.bundle.device)
        if actors_url:
            info = {
                "node_id": self.node_id,
                "actor_id": self.actor_id,
                "pid": os.getpid(),
                "device": str(self.bundle.device),
                "model_id": self.bundle.model_id,
                "started": time.time(),
            }
            name = f"{self.node_id[:16]}-{os.getpid()}.json"
            storage.write_bytes(
                storage.join(actors_url, name), json.dumps(info).encode(), storage_cfg
            )

    # ------------------------------------------------------------------ model
    def infer(
        self,
        images: np.ndarray,
        object_ids: list[str],
        observables: Mapping[str, np.ndarray] | None = None,
    ) -> tuple[dict[str, np.ndarray], np.ndarray, np.ndarray, list[str | None]]:
        """Run the model on prepared images, in one pass on the bundle's device.

        ``bundle.represent`` (the whole batch in one forward pass, autocast to float16 on
        CUDA when ``mixed_precision`` is set), then the
        :class:`~ergo_ray.infer.posterior.Posterior` of the representations:
        its :meth:`~ergo_ray.infer.posterior.Posterior.summaries` with seeds from
        ``(seed, object_id)`` and its OOD scores (on CUDA from a reference set kept on the
        device, :class:`OodOnDevice`).

        Parameters
        ----------
        images : numpy.ndarray
            uint8 (N, 3, S, S).
        object_ids : list of str
            Their IDs (posterior seeds).
        observables : mapping of str to numpy.ndarray, optional
            (N,) catalogue values of the bundle's observables (``cinn.observables``); an
            object without one of them gets an error.

        Returns
        -------
        summaries : dict of str to numpy.ndarray
            ``posterior_summary_columns()`` → float64 (N,).
        ood : numpy.ndarray
            float64 (N,) OOD scores.
        reps : numpy.ndarray
            float32 (N, rep_dim) representations.
        errors : list of str or None
            Per object, why the model could not process it (non-finite representation, a
            missing observable or non-finite samples), naming its ID, else None.
        """
        import torch

        from ergo_ray.infer.posterior import Posterior

        b, n = self.bundle, len(object_ids)
        reps = b.represent(images, batch_size=max(1, n), mixed_precision=self.mixed_precision)
        given = observables or {}
        observed = {c: given[c] if c in given else np.full(n, np.nan) for c in b.observables}
        ood = (b.ood_score(reps) if self._ood_dev is None
               else self._ood_dev.score(torch.from_numpy(reps)))
        post = Posterior(b, b.condition(reps, observed), object_ids, ood=ood,
                         observed_in="the input catalogue")
        summaries = post.summaries(self.n_samples, self.seed)
        errors = [None if f is None else f"{oid}: {f[1]}"
                  for oid, f in zip(object_ids, post.failures, strict=True)]
        return summaries, np.where(post.ok, ood, np.nan), reps, errors

    def __call__(self, batch: pa.Table) -> pa.Table:
        """Process one batch of reader rows (see the module docstring)."""
        n = batch.num_rows
        errors: list[str | None] = batch.column("error").to_pylist()
        seq = batch.column("_seq").to_numpy()
        ids = [str(v) for v in batch.column("object_id").to_pylist()]
        cols = posterior_summary_columns()
        summ = {c: np.full(n, np.nan) for c in cols}
        ood = np.full(n, np.nan)
        rep_dim = int(getattr(self.bundle, "rep_dim", 256))
        reps = np.full((n, rep_dim), np.nan, np.float32)
        idx = np.flatnonzero(np.array([e is None for e in errors], bool) & (seq >= 0))
        if idx.size:
            img = batch.column("image").combine_chunks()
            side = round((img.type.list_size / 3) ** 0.5)
            flat = img.flatten().to_numpy(zero_copy_only=False)
            images = flat.reshape(n, 3, side, side)[idx]
            observed = {
                c: batch.column(c).to_numpy(zero_copy_only=False)[idx]
                for c in CINN_OBSERVABLES
                if c in batch.column_names
            }
            s, o, r, errs = self.infer(images, [ids[i] for i in idx], observed)
            for c in cols:
                summ[c][idx] = s[c]
            ood[idx] = o
            reps[idx] = r
            for j, e in zip(idx, errs, strict=True):
                if e is not None:
                    errors[j] = e
        failed = np.array([e is not None for e in errors], bool)
        arrays: list[pa.Array] = [
            batch.column(c).combine_chunks().cast(pa.string()) for c in ID_COLUMNS
        ]
        arrays += [pa.array(np.where(failed, np.nan, summ[c]), pa.float64()) for c in cols]
        arrays += [
            pa.array(np.where(failed, np.nan, ood), pa.float64()),
            pa.array(np.where(failed, 0, self.n_samples).astype(np.int32), pa.int32()),
            pa.array(np.where(failed, "error", "ok").tolist(), pa.string()),
            pa.array(errors, pa.string()),
        ]
        if self.keep_representation:
            reps[failed] = np.nan
            arrays.append(
                pa.FixedSizeListArray.from_arrays(pa.array(reps.reshape(-1), pa.float32()), rep_dim)
            )
        arrays += [batch.column(c).combine_chunks() for c in INTERNAL_COLUMNS]
        arrays += [
            pa.array([self.node_id] * n, pa.string()),
            pa.array([self.actor_id] * n, pa.string()),
        ]
        self.rows += int(idx.size)
        return pa.Table.from_arrays(arrays, schema=self.schema)


def _where() -> tuple[str, str]:
    """Return (node id, actor id) of the current Ray worker ("local" outside Ray)."""
    try:
        import ray

        if ray.is_initialized():
            ctx = ray.get_runtime_context()
            return ctx.get_node_id(), ctx.get_actor_id() or f"pid-{os.getpid()}"
    except Exception:  # pragma: no cover - outside a Ray worker
        log.debug("no Ray runtime context", exc_info=True)
    return "local", f"pid-{os.getpid()}"
