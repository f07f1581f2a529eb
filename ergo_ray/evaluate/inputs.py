"""Read the sets that ``validate`` and ``compare`` evaluate.

A set is a folder of prepared shards (``URL/shards/part-*.parquet``, uint8 images plus
catalogue columns), or a folder of Parquet files holding a ``representation`` column (the
output of ``embed`` or ``catalog --keep-representation``). Truth kept apart from a survey's
catalogue (``--truth URL``) is joined on ``object_id``.

Reading is two-pass: the small columns of every file first (to select the split and draw a
seeded subsample), then the image or representation column of the selected rows only.
"""

from __future__ import annotations

import logging
from collections.abc import Sequence
from dataclasses import dataclass, field
from typing import TYPE_CHECKING

import numpy as np

from ergo_ray.errors import CatalogSchemaError, InputError
from ergo_ray.io import storage as st
from ergo_ray.io.schemas import META_IMAGE_SHAPE, TRUTH_COLUMNS

if TYPE_CHECKING:
    import pyarrow as pa

    from ergo_ray.config.schema import StorageConfig

__all__ = ["EvalSet", "join_truth", "parquet_files", "read_set", "read_truth"]

log = logging.getLogger("ergo_ray")

#: Small columns read when present.
_SMALL = ("object_id", "root_id", "domain", "projection", "redshift", "log_mstar",
          *TRUTH_COLUMNS, "split", "r50_px", "r90_px", "petro_r90_arcsec", "i_mag")


@dataclass
class EvalSet:
    """One set of galaxies, in memory.

    Attributes
    ----------
    name : str
        Set name (``--set NAME=URL``) or the input URL.
    columns : dict of str to numpy.ndarray
        Catalogue columns (object_id as str objects; numbers as float64).
    images : numpy.ndarray or None
        uint8 (N, 3, S, S) prepared images.
    reps : numpy.ndarray or None
        float32 (N, D) stored representations.
    sources : list of str
        The input URLs.
    """

    name: str
    columns: dict[str, np.ndarray]
    images: np.ndarray | None = None
    reps: np.ndarray | None = None
    sources: list[str] = field(default_factory=list)

    def __len__(self) -> int:
        return len(self.columns["object_id"])

    def column(self, name: str) -> np.ndarray:
        """Return a numeric column as float64, NaN-filled when the set lacks it."""
        if name in self.columns:
            return np.asarray(self.columns[name], dtype=np.float64)
        return np.full(len(self), np.nan)


def parquet_files(url: str, storage: StorageConfig | None = None) -> list[str]:
    """List the Parquet files of a set: ``URL/shards/`` if present, else ``URL`` itself.

    Parameters
    ----------
    url : str
        Folder (or single file) URL.
    storage : StorageConfig, optional
        Storage settings.

    Returns
    -------
    list of str
        Parquet file URLs, sorted.

    Raises
    ------
    InputError
        If no Parquet file is found.
    """
    shards = st.join(url, "shards")
    files = st.list_files(shards, storage, (".parquet",)) if st.exists(shards, storage) else []
    if not files:
        files = st.list_files(url, storage, (".parquet",))
        files = [f for f in files if "/errors/" not in f and "/_meta/" not in f
                 and "/truth/" not in f]
    if not files:
        msg = f"{st.redact(url)}: no Parquet files (expected prepared shards under shards/)"
        raise InputError(msg, source=url)
    return files


def _to_numpy(col: pa.ChunkedArray) -> np.ndarray:
    import pyarrow as pa

    if pa.types.is_string(col.type) or pa.types.is_large_string(col.type):
        return np.asarray(col.to_pylist(), dtype=object)
    return np.asarray(col.to_numpy(zero_copy_only=False), dtype=np.float64)


def _read_small(url: str, storage: StorageConfig | None) -> tuple[dict[str, np.ndarray], dict]:
    import pyarrow.parquet as pq

    fs, path = st.arrow_fs(url, storage)
    try:
        schema = pq.read_schema(path, filesystem=fs)
        cols = [c for c in _SMALL if c in schema.names]
        table = pq.read_table(path, columns=cols, filesystem=fs)
    except Exception as err:
        msg = f"{st.redact(url)}: cannot read Parquet: {err}"
        raise InputError(msg, source=url) from err
    if "object_id" not in table.column_names:
        msg = f"{st.redact(url)}: missing column 'object_id'"
        raise CatalogSchemaError(msg, source=url)
    meta = {k.decode(): v.decode() for k, v in (schema.metadata or {}).items()}
    return {c: _to_numpy(table.column(c)) for c in table.column_names}, {
        "names": schema.names, "meta": meta}


def _read_big(url: str, storage: StorageConfig | None, column: str, rows: np.ndarray,
              image_shape: tuple[int, ...] | None) -> np.ndarray:
    import pyarrow as pa
    import pyarrow.parquet as pq

    fs, path = st.arrow_fs(url, storage)
    table = pq.read_table(path, columns=[column], filesystem=fs)
    arr = table.column(column).combine_chunks().take(pa.array(rows, type=pa.int64()))
    flat = np.asarray(arr.flatten().to_numpy(zero_copy_only=False))
    if column == "image":
        n = len(rows)
        if image_shape is None or len(image_shape) != 3:
            side = round(float(np.sqrt(flat.size / max(n, 1) / 3)))
            image_shape = (3, side, side)
        return flat.astype(np.uint8, copy=False).reshape(n, *image_shape)
    return flat.astype(np.float32, copy=False).reshape(len(rows), -1)


def _concat_columns(parts: list[dict[str, np.ndarray]], sizes: list[int]
                    ) -> dict[str, np.ndarray]:
    """Join the files' small columns; a column a file lacks is None (text) or NaN there."""
    columns: dict[str, np.ndarray] = {}
    for k in sorted(set().union(*[p.keys() for p in parts])):
        chunks = []
        for p, n in zip(parts, sizes, strict=True):
            if k in p:
                chunks.append(p[k])
            else:
                chunks.append(np.full(n, None, dtype=object) if k in ("object_id", "root_id",
                              "domain", "split") else np.full(n, np.nan))
        columns[k] = np.concatenate(chunks) if chunks else np.array([])
    return columns


def _select_rows(columns: dict[str, np.ndarray], split: str, limit: int | None, seed: int,
                 url_list: list[str]) -> np.ndarray:
    """Return the indices of the rows of ``split``, a seeded subsample of ``limit`` of them."""
    keep = np.ones(len(columns["object_id"]), dtype=bool)
    if split != "all" and "split" in columns:
        keep = np.array([(s is None) or (s == split) for s in columns["split"]], dtype=bool)
    sel = np.flatnonzero(keep)
    if sel.size == 0:
        msg = f"{', '.join(st.redact(u) for u in url_list)}: no rows in split {split!r}"
        raise InputError(msg, source=url_list[0])
    if limit is not None and sel.size > limit:
        sel = np.sort(np.random.default_rng(seed).choice(sel, size=limit, replace=False))
    return sel


def _read_pixels(url: str, files: list[str], infos: list[dict], storage: StorageConfig | None,
                 fsel: np.ndarray, rsel: np.ndarray) -> tuple[str, np.ndarray]:
    """Read the images (or stored representations) of the selected rows.

    Returns the column read (``"image"`` or ``"representation"``) and its values, in the
    order of the selection (rows ``rsel`` of files ``fsel``, grouped by file in file order);
    ``url`` names the set in the error when the files hold neither.
    """
    has_image = all("image" in i["names"] for i in infos)
    has_rep = all("representation" in i["names"] for i in infos)
    if not (has_image or has_rep):
        msg = (f"{st.redact(url)}: needs an 'image' column (prepared shards) or a "
               "'representation' column (embed output)")
        raise CatalogSchemaError(msg, source=url)
    column = "image" if has_image else "representation"
    blocks = []
    for fi in np.unique(fsel):
        shape_txt = infos[fi]["meta"].get(META_IMAGE_SHAPE.decode())
        shape = tuple(int(v) for v in shape_txt.split(",")) if shape_txt else None
        blocks.append(_read_big(files[fi], storage, column, rsel[fsel == fi], shape))
    return column, np.concatenate(blocks, axis=0)


def read_set(
    urls: str | Sequence[str],
    storage: StorageConfig | None = None,
    name: str | None = None,
    split: str = "all",
    limit: int | None = None,
    seed: int = 0,
    need_pixels: bool = True,
) -> EvalSet:
    """Read one set (one or several folders) into memory.

    Parameters
    ----------
    urls : str or sequence of str
        Folders of prepared shards or of Parquet files with a ``representation`` column.
    storage : StorageConfig, optional
        Storage settings.
    name : str, optional
        Set name (default: the first URL).
    split : str
        ``"train"``, ``"val"``, ``"test"`` or ``"all"``. Rows of other splits are dropped;
        a file without a ``split`` column counts as all splits.
    limit : int, optional
        Keep at most this many rows, drawn at random with ``seed``.
    seed : int
        Seed of the subsample.
    need_pixels : bool
        Read images (or stored representations); False reads only catalogue columns.

    Returns
    -------
    EvalSet
        The selected rows, in a deterministic order.

    Raises
    ------
    InputError
        If nothing can be read, or no row is left after the split selection, or the files
        hold neither images nor representations.
    """
    url_list = [urls] if isinstance(urls, str) else list(urls)
    files = [(u, f) for u in url_list for f in parquet_files(u, storage)]
    parts, infos = [], []
    for _, f in files:
        cols, info = _read_small(f, storage)
        parts.append(cols)
        infos.append(info)
    sizes = [len(p["object_id"]) for p in parts]
    columns = _concat_columns(parts, sizes)
    file_idx = np.repeat(np.arange(len(files)), sizes)
    row_idx = np.concatenate([np.arange(n) for n in sizes]) if sizes else np.array([], int)
    sel = _select_rows(columns, split, limit, seed, url_list)
    columns = {k: v[sel] for k, v in columns.items()}
    out = EvalSet(name=name or url_list[0], columns=columns, sources=url_list)
    if not need_pixels:
        return out
    column, data = _read_pixels(url_list[0], [f for _, f in files], infos, storage,
                                file_idx[sel], row_idx[sel])
    if column == "image":
        out.images = data
    else:
        out.reps = data
    log.info("read %d rows of %s (%s)", len(out), out.name, column)
    return out


def read_truth(url: str, storage: StorageConfig | None = None) -> dict[str, np.ndarray]:
    """Read a separate truth table (``object_id`` + ``true_*`` columns).

    Parameters
    ----------
    url : str
        Parquet file or folder.
    storage : StorageConfig, optional
        Storage settings.

    Returns
    -------
    dict of str to numpy.ndarray
        ``object_id`` and the truth columns present.

    Raises
    ------
    CatalogSchemaError
        If ``object_id`` or every truth column is missing.
    """
    files = st.list_files(url, storage, (".parquet",))
    if not files:
        msg = f"{st.redact(url)}: no Parquet truth table found"
        raise InputError(msg, source=url)
    parts = [_read_small(f, storage)[0] for f in files]
    cols = ["object_id", *[c for c in TRUTH_COLUMNS if all(c in p for p in parts)]]
    if len(cols) == 1:
        msg = f"{st.redact(url)}: truth table has none of the columns {list(TRUTH_COLUMNS)}"
        raise CatalogSchemaError(msg, source=url)
    return {c: np.concatenate([p[c] for p in parts]) for c in cols}


def join_truth(es: EvalSet, truth: dict[str, np.ndarray]) -> int:
    """Replace the set's truth columns by a separate truth table, joined on ``object_id``.

    Parameters
    ----------
    es : EvalSet
        The set (modified in place).
    truth : dict
        From :func:`read_truth`.

    Returns
    -------
    int
        Number of the set's rows that found a truth row (others get NaN).
    """
    index = {oid: i for i, oid in enumerate(truth["object_id"])}
    pos = np.array([index.get(oid, -1) for oid in es.columns["object_id"]], dtype=np.int64)
    found = pos >= 0
    for c in TRUTH_COLUMNS:
        if c in truth:
            vals = np.full(len(es), np.nan)
            vals[found] = np.asarray(truth[c], dtype=np.float64)[pos[found]]
            es.columns[c] = vals
    return int(found.sum())
