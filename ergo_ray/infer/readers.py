"""The reader stage of ``ergo-ray catalog``: Ray Data tasks turning input units into rows.

Rows travel from here to the model actor (:mod:`ergo_ray.infer.predictors`) as Arrow tables
with these columns:

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
"""

from __future__ import annotations

import json
import logging
from collections.abc import Iterator, Mapping
from typing import TYPE_CHECKING, Any

import numpy as np
import pyarrow as pa
import pyarrow.parquet as pq

from ergo_ray.errors import BadObjectError, ErgoRayError, InputError
from ergo_ray.io import storage
from ergo_ray.io.schemas import META_IMAGE_SHAPE
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
