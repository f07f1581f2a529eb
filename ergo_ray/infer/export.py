"""A finished catalogue's other forms: one merged Parquet file, a FITS table; its records."""

from __future__ import annotations

import io
import json
from collections.abc import Iterable
from typing import TYPE_CHECKING, Any

import numpy as np
import pyarrow as pa
import pyarrow.compute as pc
import pyarrow.parquet as pq

from ergo_ray.errors import CheckpointError
from ergo_ray.infer.manifest import Manifest
from ergo_ray.io import storage
from ergo_ray.io.schemas import META_MODEL_ID, posterior_schema

if TYPE_CHECKING:
    from ergo_ray.config.schema import StorageConfig

#: Part metadata that describes one unit, dropped from the merged file.
PART_ONLY_META = (b"ergo_ray.unit", b"ergo_ray.source", b"ergo_ray.rows", b"ergo_ray.errors")


def read_json_record(url: str, storage_cfg: StorageConfig | None) -> dict[str, Any]:
    """Read one JSON record of the job's bookkeeping.

    Raises
    ------
    CheckpointError
        If the record is not a JSON object, naming its URL.
    """
    try:
        return dict(json.loads(storage.read_bytes(url, storage_cfg)))
    except (ValueError, TypeError) as err:
        msg = (f"{storage.redact(url)}: corrupt record of this catalogue job ({err}); "
               "remove it and re-run the same command")
        raise CheckpointError(msg) from err


def _part_tables(manifest: Manifest, storage_cfg: StorageConfig | None) -> Iterable[pa.Table]:
    fs, _ = storage.arrow_fs(manifest.layout.parts, storage_cfg)
    for unit in manifest.units:
        path = storage.locate(manifest.layout.part(unit.key)).path
        yield pq.read_table(path, filesystem=fs)


def first_error(manifest: Manifest, storage_cfg: StorageConfig | None) -> str | None:
    """Return the ``error`` of the catalogue's first error row, or None if it has none."""
    for t in _part_tables(manifest, storage_cfg):
        bad = t.filter(pc.equal(t.column("status"), "error"))
        if bad.num_rows:
            return str(bad.column("error")[0].as_py())
    return None


def string_lengths(tables: Iterable[pa.Table]) -> dict[bytes, bytes]:
    """Return astropy's ``table::len::<column>`` metadata for the string columns.

    ``astropy.table.Table.read(..., format="parquet")`` needs the width of every string
    column; without it, it scans the values and fails on nulls (``error`` is null on
    ``ok`` rows).
    """
    widths: dict[str, int] = {}
    for t in tables:
        for f in t.schema:
            if pa.types.is_string(f.type) or pa.types.is_large_string(f.type):
                m = pc.max(pc.utf8_length(t.column(f.name))).as_py() if t.num_rows else None
                widths[f.name] = max(widths.get(f.name, 1), int(m or 1))
    return {f"table::len::{k}".encode(): str(v).encode() for k, v in widths.items()}


def merge_parts(manifest: Manifest, storage_cfg: StorageConfig | None) -> str:
    """Write every part, in manifest order, into one ``OUT/catalog.parquet``.

    Two passes over the parts: the string widths (for astropy) first, then the rows,
    streamed one part at a time.

    Returns
    -------
    str
        The merged file's URL.
    """
    fs, _ = storage.arrow_fs(manifest.layout.parts, storage_cfg)
    paths = [storage.locate(manifest.layout.part(u.key)).path for u in manifest.units]
    strings = [f.name for f in pq.read_schema(paths[0], filesystem=fs)
               if pa.types.is_string(f.type)] if paths else []
    widths = string_lengths(pq.read_table(p, filesystem=fs, columns=strings) for p in paths)
    url = manifest.layout.merged
    writer: pq.ParquetWriter | None = None
    with storage.open_write(url, storage_cfg) as fh:
        for path in paths:
            t = pq.read_table(path, filesystem=fs)
            if writer is None:
                md = {k: v for k, v in (t.schema.metadata or {}).items()
                      if k not in PART_ONLY_META and not k.startswith(b"table::len::")}
                md.update(widths)
                writer = pq.ParquetWriter(fh, t.schema.with_metadata(md), compression="zstd")
            writer.write_table(t.cast(writer.schema))
        if writer is not None:
            writer.close()
    return url


def export_fits(manifest: Manifest, storage_cfg: StorageConfig | None) -> str:
    """Write the catalogue as a FITS binary table ``OUT/catalog.fits`` (astropy.table).

    The whole catalogue is built in memory: meant for catalogues up to a few million rows.
    Null strings become empty strings; ``representation`` becomes a (256,) vector column.

    Returns
    -------
    str
        The FITS file's URL.
    """
    from astropy.table import Table

    tables = list(_part_tables(manifest, storage_cfg))
    whole = pa.concat_tables(tables) if tables else posterior_schema().empty_table()
    md = whole.schema.metadata or {}
    t = Table()
    for name in whole.column_names:
        col = whole.column(name).combine_chunks()
        if pa.types.is_string(col.type):
            t[name] = np.array([v or "" for v in col.to_pylist()], dtype=str)
        elif pa.types.is_fixed_size_list(col.type):
            t[name] = col.flatten().to_numpy(zero_copy_only=False).reshape(len(col),
                                                                        col.type.list_size)
        else:
            t[name] = col.to_numpy(zero_copy_only=False)
    t.meta["ERGOVER"] = md.get(b"ergo_ray.version", b"").decode()
    t.meta["MODELID"] = md.get(META_MODEL_ID, b"").decode()
    t.meta["EXTNAME"] = "POSTERIOR"
    buf = io.BytesIO()
    t.write(buf, format="fits")
    url = manifest.layout.fits
    storage.write_bytes(url, buf.getvalue(), storage_cfg)
    return url


__all__ = ["export_fits", "first_error", "merge_parts", "read_json_record", "string_lengths"]
