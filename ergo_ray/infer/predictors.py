"""The Ray Data UDFs of ``ergo-ray catalog``: unit readers (CPU tasks) and the model actor.

Rows travel between the two stages as Arrow tables with these columns:

``object_id``, ``root_id``, ``domain`` (string)
    carried from the input;
``image`` (fixed_size_list<uint8>[3*S*S])
    the prepared image, channels (i, r, g), zeros on error rows;
``redshift``, ``i_mag`` (float64)
    from the input's catalogue, NaN where it has none (a model conditioned on the column,
    ``cinn.observables``, turns such a row into an error row);
``error`` (string)
    null, or why the object could not be read or prepared (naming the input);
``_unit`` (string), ``_seq`` (int32), ``_unit_rows`` (int32)
    the unit's key, the row's position in its unit and the unit's row count, which let the
    driver write a unit's part once all of its rows are back (:mod:`ergo_ray.infer.manifest`).
    An empty unit sends one marker row with ``_seq = -1`` and ``_unit_rows = 0``.

The model actor (:class:`PosteriorPredictor`) returns the posterior catalogue's columns
(:func:`ergo_ray.io.schemas.posterior_schema`) plus ``_unit``, ``_seq``, ``_unit_rows`` and
``_node`` / ``_actor`` (where it ran).
"""

from __future__ import annotations

import json
import logging
import os
import time
from collections.abc import Iterator, Mapping
from typing import TYPE_CHECKING, Any

import numpy as np
import pyarrow as pa
import pyarrow.parquet as pq

from ergo_ray.errors import BadObjectError, ErgoRayError, InputError
from ergo_ray.io import storage
from ergo_ray.io.schemas import (
    META_IMAGE_SHAPE,
    posterior_schema,
    posterior_summary_columns,
)
from ergo_ray.models.observables import observable_values, source_columns
from ergo_ray.types import CINN_OBSERVABLES

if TYPE_CHECKING:
    from ergo_ray.config.schema import StorageConfig

log = logging.getLogger("ergo_ray")

#: Columns every row between the reader and the model stage carries besides ``image``.
ID_COLUMNS: tuple[str, ...] = ("object_id", "root_id", "domain")
INTERNAL_COLUMNS: tuple[str, ...] = ("_unit", "_seq", "_unit_rows")
#: Exceptions that make a whole input unit unreadable (turned into an error row).
UNIT_ERRORS: tuple[type[BaseException], ...] = (ErgoRayError, OSError, pa.ArrowException)


def reader_schema(image_size: int) -> pa.Schema:
    """Return the schema of the rows the reader stage emits."""
    return pa.schema(
        [
            pa.field("object_id", pa.string()),
            pa.field("root_id", pa.string()),
            pa.field("domain", pa.string()),
            pa.field("image", pa.list_(pa.uint8(), 3 * image_size * image_size)),
            *(pa.field(c, pa.float64()) for c in CINN_OBSERVABLES),
            pa.field("error", pa.string()),
            pa.field("_unit", pa.string()),
            pa.field("_seq", pa.int32()),
            pa.field("_unit_rows", pa.int32()),
        ]
    )


def _rows_table(
    ids: list[tuple[Any, Any, Any]],
    images: np.ndarray,
    errors: list[str | None],
    unit_key: str,
    image_size: int,
    seq: np.ndarray | None = None,
    total: int | None = None,
    observed: Mapping[str, Any] | None = None,
) -> pa.Table:
    n = len(ids)
    obs = observed or {}
    flat = pa.array(np.ascontiguousarray(images, dtype=np.uint8).reshape(-1), pa.uint8())
    obj, root, dom = (list(c) for c in zip(*ids, strict=True)) if n else ([], [], [])
    return pa.table(
        [
            pa.array([None if v is None else str(v) for v in obj], pa.string()),
            pa.array([None if v is None else str(v) for v in root], pa.string()),
            pa.array([None if v is None else str(v) for v in dom], pa.string()),
            pa.FixedSizeListArray.from_arrays(flat, 3 * image_size * image_size),
            *(
                pa.array(_floats(obs[c]) if c in obs else np.full(n, np.nan), pa.float64())
                for c in CINN_OBSERVABLES
            ),
            pa.array(errors, pa.string()),
            pa.array([unit_key] * n, pa.string()),
            pa.array(np.arange(n, dtype=np.int32) if seq is None else seq, pa.int32()),
            pa.array(np.full(n, n if total is None else total, np.int32), pa.int32()),
        ],
        schema=reader_schema(image_size),
    )


def _floats(values: Any) -> np.ndarray:
    """Float64 array of catalogue values; None and non-numbers become NaN."""
    out = []
    for v in values:
        try:
            out.append(float(v))
        except (TypeError, ValueError):
            out.append(np.nan)
    return np.asarray(out, np.float64)


def _empty_marker(unit_key: str, image_size: int) -> pa.Table:
    t = _rows_table(
        [("", None, None)],
        np.zeros((1, 3, image_size, image_size), np.uint8),
        [None],
        unit_key,
        image_size,
    )
    schema = t.schema
    return t.set_column(
        schema.get_field_index("_seq"), "_seq", pa.array([-1], pa.int32())
    ).set_column(schema.get_field_index("_unit_rows"), "_unit_rows", pa.array([0], pa.int32()))


def _unit_error_row(unit: Mapping[str, Any], err: BaseException, image_size: int) -> pa.Table:
    """One error row standing for a unit that could not be read at all."""
    reason = (
        str(err)
        if storage.redact(unit["source"]) in str(err)
        else (f"{storage.redact(unit['source'])}: {err}")
    )
    return _rows_table(
        [(storage.redact(unit["source"]), None, None)],
        np.zeros((1, 3, image_size, image_size), np.uint8),
        [f"unreadable input: {reason}"],
        unit["key"],
        image_size,
    )


def _read_prepared(
    unit: Mapping[str, Any], storage_cfg: StorageConfig | None, image_size: int
) -> pa.Table:
    url = unit["spec"]["url"]
    fs, path = storage.arrow_fs(url, storage_cfg)
    try:
        pf = pq.ParquetFile(fs.open_input_file(path))
        names = set(pf.schema_arrow.names)
        shape = (pf.schema_arrow.metadata or {}).get(META_IMAGE_SHAPE)
        want = f"3,{image_size},{image_size}".encode()
        if "image" not in names or "object_id" not in names:
            msg = f"{storage.redact(url)}: not a prepared shard (no object_id/image column)"
            raise InputError(msg, source=url)
        if shape is not None and shape.replace(b" ", b"") != want:
            msg = (
                f"{storage.redact(url)}: images are {shape.decode()} but the model expects "
                f"{want.decode()}"
            )
            raise InputError(msg, source=url)
        table = pf.read(
            columns=[
                c for c in (*ID_COLUMNS, "image", *source_columns(CINN_OBSERVABLES)) if c in names
            ]
        )
    except InputError:
        raise
    except (OSError, pa.ArrowException) as err:
        msg = f"{storage.redact(url)}: cannot read prepared shard: {err}"
        raise InputError(msg, source=url) from err
    n = table.num_rows
    img = table.column("image").combine_chunks()
    if img.type.list_size != 3 * image_size * image_size:
        msg = f"{storage.redact(url)}: image column has {img.type.list_size} values per row"
        raise InputError(msg, source=url)
    cols = {
        c: (table.column(c).to_pylist() if c in table.column_names else [None] * n)
        for c in ID_COLUMNS
    }
    values = observable_values(
        CINN_OBSERVABLES,
        lambda c: (
            table.column(c).cast(pa.float64()).fill_null(np.nan).to_numpy()
            if c in table.column_names
            else None
        ),
        n,
    )
    observed = [pa.array(values[c], pa.float64()) for c in CINN_OBSERVABLES]
    flat = img.flatten()
    return pa.table(
        [
            table.column("object_id").cast(pa.string()),
            pa.array(cols["root_id"], pa.string()),
            pa.array(cols["domain"], pa.string()),
            pa.FixedSizeListArray.from_arrays(flat, 3 * image_size * image_size),
            *observed,
            pa.nulls(n, pa.string()),
            pa.array([unit["key"]] * n, pa.string()),
            pa.array(np.arange(n, dtype=np.int32), pa.int32()),
            pa.array(np.full(n, n, np.int32), pa.int32()),
        ],
        schema=reader_schema(image_size),
    )


def _read_prepare_errors(
    unit: Mapping[str, Any], storage_cfg: StorageConfig | None, image_size: int
) -> pa.Table:
    """Objects that ``prepare`` could not prepare become error rows of the catalogue."""
    url = unit["spec"]["url"]
    try:
        with storage.open_read(url, storage_cfg) as fh:
            t = pq.read_table(fh)
    except (OSError, pa.ArrowException) as err:
        msg = f"{storage.redact(url)}: cannot read: {err}"
        raise InputError(msg, source=url) from err
    n = t.num_rows
    get = {
        c: (t.column(c).to_pylist() if c in t.column_names else [None] * n)
        for c in ("object_id", "root_id", "domain", "input_url", "reason", "message")
    }
    errors = []
    for src, why, text in zip(get["input_url"], get["reason"], get["message"], strict=True):
        where = src or storage.redact(url)
        errors.append(
            _naming(f"preprocessing failed: {why}" + (f": {text}" if text else ""), where)
        )
    # an input file whose objects could not even be listed has no object_id: use the file
    oids = [
        o if o is not None else (src or f"{storage.redact(url)}#{i}")
        for i, (o, src) in enumerate(zip(get["object_id"], get["input_url"], strict=True))
    ]
    ids = list(zip(oids, get["root_id"], get["domain"], strict=True))
    return _rows_table(
        ids, np.zeros((n, 3, image_size, image_size), np.uint8), errors, unit["key"], image_size
    )


def _naming(text: str, source: str) -> str:
    """Return ``text`` prefixed with ``source`` unless it already names it."""
    return text if source and source in text else f"{source}: {text}"


def _read_raw(
    unit: Mapping[str, Any],
    storage_cfg: StorageConfig | None,
    image_size: int,
    preprocess: Mapping[str, Any],
) -> pa.Table:
    from ergo_ray.io.sources import read_unit
    from ergo_ray.preprocess import prepare_image

    ids: list[tuple[Any, Any, Any]] = []
    images: list[np.ndarray] = []
    errors: list[str | None] = []
    measured: list[dict[str, Any]] = []  # per object: its catalogue values and radii
    blank = np.zeros((3, image_size, image_size), np.uint8)
    source = storage.redact(unit["source"])
    for row, item in read_unit(unit["spec"], storage_cfg):
        oid = row.get("object_id")
        if oid is None:  # a whole file failed and its objects cannot be listed
            oid = _naming(str(row.get("file") or ""), source) if row.get("file") else source
        ids.append((oid, row.get("root_id"), row.get("domain")))
        measured.append(dict(row))
        if isinstance(item, BaseException):
            why = getattr(item, "reason", None)
            errors.append(_naming(f"{why + ': ' if why else ''}{item}", source))
            images.append(blank)
            continue
        try:
            img, radii = prepare_image(item, size=image_size, **preprocess)
        except BadObjectError as err:
            why = f"{err.reason}: " if err.reason else ""
            where = storage.redact(item.source) if item.source else source
            errors.append(_naming(f"preprocessing failed: {why}{err}", where))
            images.append(blank)
            continue
        measured[-1].update(radii)
        errors.append(None)
        images.append(img)
    if not ids:
        return _empty_marker(unit["key"], image_size)
    observed = observable_values(
        CINN_OBSERVABLES, lambda c: _floats([m.get(c) for m in measured]), len(ids)
    )
    return _rows_table(ids, np.stack(images), errors, unit["key"], image_size, observed=observed)


def read_units(
    batch: dict[str, np.ndarray],
    *,
    storage_cfg: StorageConfig | None,
    image_size: int,
    preprocess: Mapping[str, Any],
) -> Iterator[pa.Table]:
    """Ray Data task UDF: read input units and emit one row per object (or error).

    Parameters
    ----------
    batch : dict of str to numpy.ndarray
        ``unit`` column: JSON of :class:`~ergo_ray.infer.manifest.WorkUnit` fields.
    storage_cfg : StorageConfig or None
        Storage settings.
    image_size : int
        The model's input side S.
    preprocess : mapping
        Keyword arguments of :func:`ergo_ray.preprocess.prepare_image` (besides ``size``)
        for raw input, taken from the model bundle's configuration.

    Yields
    ------
    pyarrow.Table
        The rows of one unit (:func:`reader_schema`).
    """
    for text in batch["unit"]:
        unit = json.loads(str(text))
        try:
            if unit["kind"] == "prepared":
                table = _read_prepared(unit, storage_cfg, image_size)
            elif unit["kind"] == "prepare-errors":
                table = _read_prepare_errors(unit, storage_cfg, image_size)
            else:
                table = _read_raw(unit, storage_cfg, image_size, preprocess)
        except UNIT_ERRORS as err:
            log.warning("unit %s: %s", storage.redact(unit["source"]), err)
            table = _unit_error_row(unit, err, image_size)
        if table.num_rows == 0:
            table = _empty_marker(unit["key"], image_size)
        yield table


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

        The same computation as ``bundle.summarize(bundle.sample_posterior(bundle.represent(
        images), n, seeds=object_seeds(ids, seed), observables=observables))`` and
        ``bundle.ood_score``, but the
        representations and samples stay on the device between the steps; the uint8 images
        and the latent noise are copied from pinned host memory without blocking; the
        encoder runs under autocast (float16) on CUDA when ``mixed_precision`` is set.

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
            missing observable or non-finite samples), else None.
        """
        import torch

        from ergo_ray.models.cinn import latent_noise, object_seeds
        from ergo_ray.shared.summaries import summarize

        b = self.bundle
        dev = b.device
        cuda = dev.type == "cuda"
        n = len(object_ids)
        errors: list[str | None] = [None] * n

        def to_dev(arr: np.ndarray) -> torch.Tensor:
            arr = np.ascontiguousarray(arr)
            if not arr.flags.writeable:  # zero-copy Arrow buffers are read-only
                arr = arr.copy()
            t = torch.from_numpy(arr)
            return (t.pin_memory() if cuda else t).to(dev, non_blocking=True)

        seeds = object_seeds(object_ids, self.seed)
        given = observables or {}
        observed = np.full((n, len(b.observables)), np.nan, np.float32)
        for j, c in enumerate(b.observables):
            if c in given:
                observed[:, j] = given[c]
        with torch.inference_mode():
            x = to_dev(images).float().div_(255.0)
            if cuda:
                x = x.contiguous(memory_format=torch.channels_last)
            with torch.autocast(
                dev.type, dtype=torch.float16, enabled=cuda and self.mixed_precision
            ):
                reps = b.encoder(x)
            reps = reps.float()
            cond = torch.cat([reps, to_dev(observed)], dim=1)
            good = torch.isfinite(cond).all(dim=1)
            samples = torch.full((n, self.n_samples, 3), float("nan"), device=dev)
            per = max(1, (1 << 18) // self.n_samples)
            for start in range(0, n, per):
                sl = slice(start, start + per)
                z = to_dev(latent_noise(seeds[sl], self.n_samples, 3))
                c = torch.where(good[sl, None], cond[sl], torch.zeros_like(cond[sl]))
                samples[sl] = b.transform.inverse(b.cinn.sample(c, z)).float()
            good &= torch.isfinite(samples).all(dim=2).all(dim=1)
            if self._ood_dev is not None:
                ood = self._ood_dev.score(reps)
            reps_np = reps.cpu().numpy()
            if self._ood_dev is None:
                ood = np.asarray(b.ood.score(reps_np, device=dev), np.float64)
            samples = b.widen(samples, ood=ood)
            summ = summarize(samples, grid=b.kde_grid, device=dev)
            ok = good.cpu().numpy()
        finite_rep = np.isfinite(reps_np).all(axis=1)
        for i in np.flatnonzero(~ok):
            lacking = [
                c for c, v in zip(b.observables, observed[i], strict=True) if not np.isfinite(v)
            ]
            if not finite_rep[i]:
                errors[i] = f"{object_ids[i]}: model failed: non-finite representation"
            elif lacking:
                errors[i] = (
                    f"{object_ids[i]}: no {', '.join(lacking)} in the input catalogue "
                    f"(the model is conditioned on {', '.join(b.observables)})"
                )
            else:
                errors[i] = f"{object_ids[i]}: model failed: non-finite posterior samples"
        out = {k: np.where(ok, np.asarray(v, np.float64), np.nan) for k, v in summ.items()}
        return out, np.where(ok, ood, np.nan), reps_np, errors

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
