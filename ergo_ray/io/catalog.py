"""Catalogue tables: the Parquet catalogue folders ergo_ray writes and reads.

A catalogue folder is ``URL/catalog/part-*.parquet`` (the mock, ingest and prepare stages
write one); the hidden-truth table of the ``hsc`` mock domain is ``URL/truth/part-*.parquet``.
Every Parquet file ergo_ray writes carries key-value metadata ``ergo_ray.version``,
``ergo_ray.schema`` and ``ergo_ray.kind``. A user's own catalogue (CSV, FITS, Parquet) is read
by :mod:`ergo_ray.io.user_catalog`.
"""

from __future__ import annotations

import io
from collections.abc import Iterable, Mapping, Sequence
from typing import TYPE_CHECKING, Any

import numpy as np
import pyarrow as pa
import pyarrow.parquet as pq

from ergo_ray import __version__
from ergo_ray.errors import CatalogSchemaError, InputError
from ergo_ray.io import storage as st
from ergo_ray.io.schemas import (
    CATALOG_FIELDS,
    META_KIND,
    META_SCHEMA,
    META_VERSION,
    OPTIONAL_FIELDS,
    REQUIRED_COLUMNS,
    SCHEMA_VERSION,
)

if TYPE_CHECKING:
    from ergo_ray.config.schema import StorageConfig

__all__ = [
    "CATALOG_DIR",
    "TRUTH_DIR",
    "catalog_parts",
    "conform_types",
    "part_name",
    "read_catalog",
    "read_metadata",
    "read_parquet_file",
    "rows_to_table",
    "table_to_bytes",
    "validate_columns",
    "write_part",
]

CATALOG_DIR = "catalog"
TRUTH_DIR = "truth"

#: Known column types: the contract columns and the optional observables.
_KNOWN_TYPES: dict[str, pa.DataType] = {
    f.name: f.type for f in (*CATALOG_FIELDS, *OPTIONAL_FIELDS)
}


def part_name(index: int, sub: int | None = None) -> str:
    """Return the file name of a numbered part (``part-00003.parquet``, ``part-00003-001...``).

    Parameters
    ----------
    index : int
        Part number (for example the Ray task index).
    sub : int, optional
        Sub-part number within that part.

    Returns
    -------
    str
        The file name.
    """
    return (
        f"part-{index:05d}.parquet"
        if sub is None
        else f"part-{index:05d}-{sub:03d}.parquet"
    )


def _order(names: Iterable[str]) -> list[str]:
    names = list(dict.fromkeys(names))
    known = [f.name for f in (*CATALOG_FIELDS, *OPTIONAL_FIELDS) if f.name in names]
    return known + [n for n in names if n not in known]


def rows_to_table(
    rows: Sequence[Mapping[str, Any]],
    *,
    drop: Iterable[str] = (),
    types: Mapping[str, pa.DataType] | None = None,
) -> pa.Table:
    """Build a catalogue table from row dicts, with the contract's column types and order.

    Parameters
    ----------
    rows : sequence of mapping
        One dict per object; keys are column names, values Python or NumPy scalars.
    drop : iterable of str
        Columns to leave out (e.g. :data:`~ergo_ray.io.schemas.TRUTH_COLUMNS`).
    types : mapping, optional
        Types for further columns (default: inferred).

    Returns
    -------
    pyarrow.Table
        Contract columns first (in contract order), then the rest in first-seen order.
    """
    drop = set(drop)
    names = _order(k for r in rows for k in r if k not in drop)
    extra = dict(types or {})
    arrays, fields = [], []
    for name in names:
        values = [_py(r.get(name)) for r in rows]
        typ = extra.get(name) or _KNOWN_TYPES.get(name)
        arr = pa.array(values, type=typ) if typ is not None else pa.array(values)
        if pa.types.is_null(arr.type):
            arr = arr.cast(pa.float64())
        arrays.append(arr)
        nullable = name not in ("object_id", "root_id", "domain") or arr.null_count > 0
        fields.append(pa.field(name, arr.type, nullable=nullable))
    if not names:
        return pa.schema([]).empty_table()
    return pa.Table.from_arrays(arrays, schema=pa.schema(fields))


def _py(value: Any) -> Any:
    if isinstance(value, np.generic):
        return value.item()
    return value


def validate_columns(
    schema: pa.Schema, source: str, required: Iterable[str] = REQUIRED_COLUMNS
) -> None:
    """Check that a table has the required columns and that known columns have usable types.

    Parameters
    ----------
    schema : pyarrow.Schema
        The table's schema.
    source : str
        File or URL named in the error.
    required : iterable of str
        Columns that must be present.

    Raises
    ------
    CatalogSchemaError
        Listing every missing column and every known column of the wrong type, and the file.
    """
    have = set(schema.names)
    problems = []
    missing = [c for c in required if c not in have]
    if missing:
        cols = ", ".join(repr(c) for c in missing)
        problems.append(f"missing column{'s' if len(missing) > 1 else ''} {cols}")
    for field in schema:
        want = _KNOWN_TYPES.get(field.name)
        if want is None or field.type == want or pa.types.is_null(field.type):
            continue
        ok = (
            (
                pa.types.is_string(want)
                and (
                    pa.types.is_string(field.type)
                    or pa.types.is_large_string(field.type)
                )
            )
            or (pa.types.is_integer(want) and pa.types.is_integer(field.type))
            or (
                pa.types.is_floating(want)
                and (
                    pa.types.is_floating(field.type) or pa.types.is_integer(field.type)
                )
            )
        )
        if not ok:
            problems.append(
                f"column {field.name!r} has type {field.type}, expected {want}"
            )
    if problems:
        msg = f"{st.redact(source)}: " + "; ".join(problems)
        raise CatalogSchemaError(msg, source)


def conform_types(table: pa.Table) -> pa.Table:
    """Cast known columns to their contract types (int → float, large_string → string).

    Parameters
    ----------
    table : pyarrow.Table
        Any table.

    Returns
    -------
    pyarrow.Table
        The table, its contract and optional-observable columns cast to their types.
    """
    for i, field in enumerate(table.schema):
        want = _KNOWN_TYPES.get(field.name)
        if want is not None and field.type != want:
            table = table.set_column(
                i,
                pa.field(field.name, want, nullable=field.nullable),
                table.column(i).cast(want),
            )
    return table


def table_to_bytes(
    table: pa.Table,
    kind: str,
    extra_meta: Mapping[str, str] | None = None,
    row_group_size: int | None = None,
) -> bytes:
    """Serialise a table to Parquet with ergo_ray's key-value metadata.

    Parameters
    ----------
    table : pyarrow.Table
        The table.
    kind : str
        ``ergo_ray.kind`` (``catalog``, ``truth``, ``raw-shard``, ...).
    extra_meta : mapping, optional
        Further ``ergo_ray.*`` keys.
    row_group_size : int, optional
        Rows per Parquet row group.

    Returns
    -------
    bytes
        The Parquet file.
    """
    meta = dict(table.schema.metadata or {})
    meta.update(
        {
            META_VERSION: __version__.encode(),
            META_SCHEMA: SCHEMA_VERSION.encode(),
            META_KIND: kind.encode(),
        }
    )
    for key, value in (extra_meta or {}).items():
        meta[key.encode() if isinstance(key, str) else key] = str(value).encode()
    table = table.replace_schema_metadata(meta)
    sink = pa.BufferOutputStream()
    pq.write_table(table, sink, row_group_size=row_group_size, compression="zstd")
    return sink.getvalue().to_pybytes()


def write_part(
    url: str,
    table: pa.Table,
    storage: StorageConfig | None = None,
    kind: str = "catalog",
    extra_meta: Mapping[str, str] | None = None,
) -> str:
    """Write one Parquet part atomically.

    Parameters
    ----------
    url : str
        File URL (``.../catalog/part-00000.parquet``).
    table : pyarrow.Table
        Rows to write.
    storage : StorageConfig, optional
        Storage settings.
    kind : str
        ``ergo_ray.kind`` metadata value.
    extra_meta : mapping, optional
        Further metadata keys.

    Returns
    -------
    str
        ``url``.
    """
    st.write_bytes(url, table_to_bytes(table, kind, extra_meta), storage)
    return url


def read_parquet_file(
    url: str, storage: StorageConfig | None = None, columns: Sequence[str] | None = None
) -> pa.Table:
    """Read one Parquet file from a URL.

    Raises
    ------
    InputError
        If the file is not readable Parquet.
    StorageError
        If it cannot be fetched.
    """
    data = st.read_bytes(url, storage)
    try:
        return pq.read_table(
            io.BytesIO(data), columns=list(columns) if columns else None
        )
    except (pa.ArrowInvalid, OSError) as err:
        msg = f"{st.redact(url)}: not a readable Parquet file ({err})"
        raise InputError(msg, url) from err


def read_metadata(url: str, storage: StorageConfig | None = None) -> dict[str, str]:
    """Return a Parquet file's ``ergo_ray.*`` key-value metadata as a str → str dict."""
    fs, path = st.arrow_fs(url, storage)
    try:
        with fs.open_input_file(path) as fh:
            meta = pq.read_schema(fh).metadata or {}
    except (pa.ArrowInvalid, OSError) as err:
        msg = f"{st.redact(url)}: cannot read Parquet metadata ({err})"
        raise InputError(msg, url) from err
    return {
        k.decode(): v.decode() for k, v in meta.items() if k.startswith(b"ergo_ray.")
    }


def catalog_parts(
    url: str, storage: StorageConfig | None = None, sub: str = CATALOG_DIR
) -> list[str]:
    """List the Parquet parts of a catalogue.

    Parameters
    ----------
    url : str
        A run folder (holding ``catalog/``), a catalogue folder, or one Parquet file.
    storage : StorageConfig, optional
        Storage settings.
    sub : str
        Sub-folder to look in first (``catalog`` or ``truth``).

    Returns
    -------
    list of str
        Part URLs, sorted.

    Raises
    ------
    InputError
        If no Parquet part is found.
    """
    if str(url).endswith(".parquet"):
        return [st.locate(url).url]
    inner = st.join(url, sub)
    parts: list[str] = []
    if st.exists(inner, storage):
        parts = st.list_files(inner, storage, (".parquet",))
    elif st.exists(url, storage):
        base = st.locate(url).url.rstrip("/")
        parts = [
            p
            for p in st.list_files(url, storage, (".parquet",))
            if p.rsplit("/", 1)[0] == base
        ]
    if not parts:
        msg = f"{st.redact(url)}: no catalogue found (expected {sub}/part-*.parquet)"
        raise InputError(msg, url)
    return parts


def read_catalog(
    url: str,
    storage: StorageConfig | None = None,
    *,
    columns: Sequence[str] | None = None,
    required: Iterable[str] = REQUIRED_COLUMNS,
    sub: str = CATALOG_DIR,
) -> pa.Table:
    """Read and validate a catalogue folder (or file) into one table.

    Parameters
    ----------
    url : str
        Run folder, ``catalog/`` folder or a single part.
    storage : StorageConfig, optional
        Storage settings.
    columns : sequence of str, optional
        Columns to keep.
    required : iterable of str
        Columns each part must have (default: the contract's required columns).
    sub : str
        ``catalog`` or ``truth``.

    Returns
    -------
    pyarrow.Table
        All parts concatenated, known columns cast to the contract types.

    Raises
    ------
    CatalogSchemaError
        A part misses a required column or has a known column of the wrong type; the message
        names the part.
    InputError
        No part, or a part that is not Parquet.
    """
    required = tuple(required)
    tables = []
    for part in catalog_parts(url, storage, sub):
        table = read_parquet_file(part, storage)
        validate_columns(table.schema, part, required)
        table = conform_types(table)
        if columns:
            table = table.select([c for c in columns if c in table.column_names])
        tables.append(table.replace_schema_metadata(None))
    return pa.concat_tables(tables, promote_options="permissive")
