"""Raw Parquet shards: catalogue rows plus the g, r, i cutout of each object.

Layout (design notes, "Mock output folder"): the catalogue columns, then ``image``
``fixed_size_list<float32>[3*H*W]`` (g, r, i planes, C order, zero-point-27 units),
``mask`` ``fixed_size_list<int32>[3*H*W]`` (canonical HSC bits; null when the object has no
mask), ``variance`` ``fixed_size_list<float32>[3*H*W]`` (null when absent), ``height`` and
``width`` (int32). Key-value metadata: ``ergo_ray.kind=raw-shard``,
``ergo_ray.image_shape="3,H,W"``, ``ergo_ray.schema``, ``ergo_ray.version``.
All cutouts of one shard share one shape.
"""

from __future__ import annotations

import io
from collections.abc import Iterator, Mapping, Sequence
from typing import TYPE_CHECKING, Any

import numpy as np
import pyarrow as pa
import pyarrow.compute as pc
import pyarrow.parquet as pq

from ergo_ray.errors import BadObjectError, InputError
from ergo_ray.io import storage as st
from ergo_ray.io.catalog import rows_to_table, table_to_bytes
from ergo_ray.io.cutout import Cutout
from ergo_ray.io.fits_common import validate_cutout
from ergo_ray.io.schemas import META_IMAGE_SHAPE, META_KIND

if TYPE_CHECKING:
    from ergo_ray.config.schema import StorageConfig

__all__ = [
    "PIXEL_COLUMNS",
    "RAW_SHARD_KIND",
    "cutouts_to_table",
    "iter_raw_shard",
    "read_raw_shard",
    "write_raw_shard",
]

RAW_SHARD_KIND = "raw-shard"
#: Columns that hold pixels or their shape (everything else is catalogue).
PIXEL_COLUMNS: tuple[str, ...] = ("image", "mask", "variance", "height", "width")
#: Rows per Parquet row group, so that readers stream a shard in small batches.
ROW_GROUP = 64


def _fixed(
    planes: Sequence[np.ndarray | None], size: int, dtype: Any, typ: pa.DataType
) -> pa.FixedSizeListArray:
    nulls = np.array([p is None for p in planes], dtype=bool)
    flat = np.zeros((len(planes), size), dtype=dtype)
    for k, p in enumerate(planes):
        if p is not None:
            flat[k] = np.asarray(p, dtype=dtype).reshape(-1)
    values = pa.array(flat.reshape(-1), type=typ)
    return pa.FixedSizeListArray.from_arrays(
        values, size, mask=pa.array(nulls) if nulls.any() else None
    )


def cutouts_to_table(
    rows: Sequence[Mapping[str, Any]],
    cutouts: Sequence[Cutout],
    drop: Sequence[str] = (),
) -> pa.Table:
    """Build a raw-shard table from catalogue rows and their cutouts.

    Parameters
    ----------
    rows : sequence of mapping
        Catalogue rows, one per cutout.
    cutouts : sequence of Cutout
        Cutouts of one common shape (3, H, W).
    drop : sequence of str
        Catalogue columns to leave out (e.g. the truth of the ``hsc`` domain).

    Returns
    -------
    pyarrow.Table
        Catalogue columns, then the pixel columns.

    Raises
    ------
    InputError
        If the cutouts differ in shape or are not (3, H, W), or the counts differ.
    """
    if len(rows) != len(cutouts):
        msg = f"{len(rows)} rows but {len(cutouts)} cutouts"
        raise InputError(msg)
    shapes = {c.image.shape for c in cutouts}
    if len(shapes) > 1 or any(len(s) != 3 or s[0] != 3 for s in shapes):
        msg = (
            f"cutouts of one shard must share one (3, H, W) shape, got {sorted(shapes)}"
        )
        raise InputError(msg)
    _, h, w = shapes.pop() if shapes else (3, 0, 0)
    size = 3 * h * w
    table = rows_to_table(rows, drop=drop)
    table = table.drop_columns([c for c in PIXEL_COLUMNS if c in table.column_names])
    n = len(cutouts)
    cols = {
        "image": _fixed([c.image for c in cutouts], size, np.float32, pa.float32()),
        "mask": _fixed([c.mask for c in cutouts], size, np.int32, pa.int32()),
        "variance": _fixed(
            [c.variance for c in cutouts], size, np.float32, pa.float32()
        ),
        "height": pa.array(np.full(n, h, np.int32)),
        "width": pa.array(np.full(n, w, np.int32)),
    }
    for name, arr in cols.items():
        table = table.append_column(name, arr)
    return table


def write_raw_shard(
    url: str,
    rows: Sequence[Mapping[str, Any]],
    cutouts: Sequence[Cutout],
    storage: StorageConfig | None = None,
    drop: Sequence[str] = (),
) -> int:
    """Write one raw shard atomically.

    Parameters
    ----------
    url : str
        File URL (``.../shards/part-00000.parquet``).
    rows : sequence of mapping
        Catalogue rows.
    cutouts : sequence of Cutout
        Their cutouts (one shape).
    storage : StorageConfig, optional
        Storage settings.
    drop : sequence of str
        Catalogue columns to leave out.

    Returns
    -------
    int
        Rows written.
    """
    table = cutouts_to_table(rows, cutouts, drop)
    h, w = cutouts[0].image.shape[1:] if cutouts else (0, 0)
    data = table_to_bytes(
        table,
        RAW_SHARD_KIND,
        {META_IMAGE_SHAPE.decode(): f"3,{h},{w}"},
        row_group_size=ROW_GROUP,
    )
    st.write_bytes(url, data, storage)
    return table.num_rows


def _planes(
    col: pa.ChunkedArray | pa.Array, size: int, dtype: Any
) -> tuple[np.ndarray, np.ndarray]:
    arr = col.combine_chunks() if isinstance(col, pa.ChunkedArray) else col
    if not pa.types.is_fixed_size_list(arr.type) or arr.type.list_size != size:
        msg = f"pixel column has type {arr.type}, expected fixed_size_list[{size}]"
        raise ValueError(msg)
    values = arr.values.slice(arr.offset * size, len(arr) * size)
    values = pc.fill_null(values, 0)
    flat = values.to_numpy(zero_copy_only=False).astype(dtype, copy=False)
    nulls = arr.is_null().to_numpy(zero_copy_only=False)
    return flat.reshape(len(arr), size), nulls


def _open_shard(url: str, storage: StorageConfig | None) -> pq.ParquetFile:
    data = st.read_bytes(url, storage)
    try:
        return pq.ParquetFile(io.BytesIO(data))
    except (pa.ArrowInvalid, OSError) as err:
        msg = f"{st.redact(url)}: not a readable Parquet shard ({err})"
        raise InputError(msg, url) from err


def iter_raw_shard(
    url: str, storage: StorageConfig | None = None, columns: Sequence[str] | None = None
) -> Iterator[tuple[dict[str, Any], Cutout | BadObjectError]]:
    """Stream a raw shard: one ``(row, cutout)`` per object, or ``(row, BadObjectError)``.

    Parameters
    ----------
    url : str
        Shard URL.
    storage : StorageConfig, optional
        Storage settings.
    columns : sequence of str, optional
        Catalogue columns to return in ``row`` (default: all non-pixel columns).

    Yields
    ------
    tuple of (dict, Cutout or BadObjectError)
        The row and its cutout, or the reason the object's pixels are unusable
        (wrong shape, all NaN). Rows are read one row group at a time.

    Raises
    ------
    InputError
        If the file is not a readable Parquet shard or lacks the pixel columns.
    """
    pf = _open_shard(url, storage)
    names = pf.schema_arrow.names
    missing = [c for c in ("object_id", "image", "height", "width") if c not in names]
    if missing:
        msg = f"{st.redact(url)}: not a raw shard (missing column(s) {', '.join(missing)})"
        raise InputError(msg, url)
    meta = pf.schema_arrow.metadata or {}
    if meta.get(META_KIND, b"raw-shard") != RAW_SHARD_KIND.encode():
        msg = f"{st.redact(url)}: Parquet kind {meta[META_KIND].decode()!r}, expected a raw shard"
        raise InputError(msg, url)
    cat_cols = [c for c in names if c not in PIXEL_COLUMNS]
    if columns is not None:
        cat_cols = [c for c in cat_cols if c in columns or c == "object_id"]
    try:
        batches = list(range(pf.num_row_groups))
        for rg in batches:
            table = pf.read_row_group(rg)
            yield from _rows_of(table, cat_cols, url)
    except (pa.ArrowInvalid, OSError) as err:
        msg = f"{st.redact(url)}: corrupt Parquet shard ({err})"
        raise InputError(msg, url) from err


def _rows_of(
    table: pa.Table, cat_cols: Sequence[str], url: str
) -> Iterator[tuple[dict[str, Any], Cutout | BadObjectError]]:
    rows = table.select(cat_cols).to_pylist()
    heights = table.column("height").to_numpy()
    widths = table.column("width").to_numpy()
    shape_set = {(int(h), int(w)) for h, w in zip(heights, widths, strict=True)}
    name = st.redact(url)
    if len(shape_set) != 1:
        for row in rows:
            yield (
                row,
                BadObjectError(
                    f"{name}: object {row['object_id']}: rows of one shard "
                    f"differ in height/width {sorted(shape_set)}",
                    row.get("object_id"),
                    "bad_shape",
                ),
            )
        return
    h, w = shape_set.pop()
    size = 3 * h * w
    try:
        image, img_null = _planes(table.column("image"), size, np.float32)
        mask = var = None
        if "mask" in table.column_names:
            mask = _planes(table.column("mask"), size, np.int32)
        if "variance" in table.column_names:
            var = _planes(table.column("variance"), size, np.float32)
    except ValueError as err:
        for row in rows:
            yield (
                row,
                BadObjectError(
                    f"{name}: object {row['object_id']}: {err} (height={h}, width={w})",
                    row.get("object_id"),
                    "bad_shape",
                ),
            )
        return
    for k, row in enumerate(rows):
        oid = row.get("object_id")
        if img_null[k]:
            yield (
                row,
                BadObjectError(f"{name}: object {oid}: no image", oid, "no_image"),
            )
            continue
        cut = Cutout(
            image[k].reshape(3, h, w).copy(),
            None if mask is None or mask[1][k] else mask[0][k].reshape(3, h, w).copy(),
            None if var is None or var[1][k] else var[0][k].reshape(3, h, w).copy(),
            f"{url}#{oid}",
        )
        try:
            yield row, validate_cutout(cut, oid)
        except BadObjectError as err:
            yield row, err


def read_raw_shard(
    url: str, storage: StorageConfig | None = None
) -> tuple[list[dict[str, Any]], list[Cutout]]:
    """Read a whole raw shard, failing on the first bad object.

    Parameters
    ----------
    url : str
        Shard URL.
    storage : StorageConfig, optional
        Storage settings.

    Returns
    -------
    tuple of (list of dict, list of Cutout)
        Rows and cutouts, in file order.

    Raises
    ------
    BadObjectError
        For the first object whose pixels are unusable.
    InputError
        If the file is not a raw shard.
    """
    rows, cuts = [], []
    for row, cut in iter_raw_shard(url, storage):
        if isinstance(cut, BadObjectError):
            raise cut
        rows.append(row)
        cuts.append(cut)
    return rows, cuts
