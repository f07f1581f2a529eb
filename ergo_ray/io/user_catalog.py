"""User catalogues: a CSV (``.csv``, ``.csv.gz``), FITS-table or Parquet file of the user's.

:func:`read_user_catalog` reads one into a table whose known columns have their contract types
(:func:`ergo_ray.io.catalog.conform_types`) and whose integer survey IDs are strings.
"""

from __future__ import annotations

import io
from collections.abc import Iterable
from typing import TYPE_CHECKING

import numpy as np
import pyarrow as pa

from ergo_ray.errors import InputError, StorageError
from ergo_ray.io import storage as st
from ergo_ray.io.catalog import conform_types, read_parquet_file, validate_columns

if TYPE_CHECKING:
    from ergo_ray.config.schema import StorageConfig

__all__ = ["read_user_catalog"]


def _fits_table(data: bytes, url: str) -> pa.Table:
    from astropy.table import Table

    from ergo_ray.io.fits_common import fits_bytes_open

    with fits_bytes_open(data, url) as hdul:
        hdu = next((h for h in hdul if getattr(h, "columns", None) is not None), None)
        if hdu is None:
            msg = f"{st.redact(url)}: FITS file has no table HDU"
            raise InputError(msg, url)
        table = Table.read(hdu)
    cols: dict[str, pa.Array] = {}
    for name in table.colnames:
        col = table[name]
        values = np.asarray(col)
        if values.ndim > 1:
            continue  # vector columns have no catalogue meaning here
        mask = np.asarray(getattr(col, "mask", np.zeros(len(col), bool)), dtype=bool)
        if values.dtype.kind == "S":
            values = np.char.decode(values, "utf-8")
        if values.dtype.kind == "U":
            values = np.char.strip(values)
            cols[name] = pa.array(
                [None if m else str(v) for v, m in zip(values, mask, strict=True)],
                type=pa.string(),
            )
        else:
            cols[name] = pa.array(
                values.astype(values.dtype.newbyteorder("=")),
                mask=mask if mask.any() else None,
            )
    return pa.table(cols)


def _is_dir(url: str, storage: StorageConfig | None) -> bool:
    fs, path = st.fsspec_fs(url, storage)
    try:
        return bool(fs.isdir(path))
    except OSError:
        return False


def read_user_catalog(
    url: str, storage: StorageConfig | None = None, required: Iterable[str] = ()
) -> pa.Table:
    """Read a user's catalogue: CSV (``.csv``, ``.csv.gz``), FITS table or Parquet.

    Parameters
    ----------
    url : str
        File URL (or a folder of Parquet parts).
    storage : StorageConfig, optional
        Storage settings.
    required : iterable of str
        Columns the caller needs (e.g. ``("ra", "dec")``).

    Returns
    -------
    pyarrow.Table
        The table, with known columns cast to the contract types where they exist.

    Raises
    ------
    CatalogSchemaError
        Missing required columns (all listed) or known columns of unusable types.
    InputError
        Unknown file type or unreadable file.
    """
    import pyarrow.csv as pcsv

    name = str(url).lower()
    try:
        if name.endswith((".csv", ".csv.gz", ".txt")):
            data = st.read_bytes(url, storage)
            if data[:2] == b"\x1f\x8b":
                import gzip

                data = gzip.decompress(data)
            table = pcsv.read_csv(io.BytesIO(data))
        elif name.endswith((".fits", ".fit", ".fits.gz", ".fit.gz")):
            table = _fits_table(st.read_bytes(url, storage), url)
        elif name.endswith(".parquet") or _is_dir(url, storage):
            parts = (
                [url]
                if name.endswith(".parquet")
                else st.list_files(url, storage, (".parquet",))
            )
            if not parts:
                msg = f"{st.redact(url)}: no Parquet files in this folder"
                raise InputError(msg, url)
            table = pa.concat_tables(
                [read_parquet_file(p, storage) for p in parts],
                promote_options="permissive",
            )
        else:
            msg = (
                f"{st.redact(url)}: unknown catalogue type; use .csv, .fits or .parquet"
            )
            raise InputError(msg, url)
    except (pa.ArrowInvalid, UnicodeDecodeError) as err:
        msg = f"{st.redact(url)}: cannot parse catalogue ({err})"
        raise InputError(msg, url) from err
    except StorageError:
        raise
    for name in ("object_id", "root_id"):
        # survey IDs are integers in HSC/SDSS tables; ergo_ray's IDs are strings (contract.md)
        if name in table.column_names and pa.types.is_integer(
            table.schema.field(name).type
        ):
            i = table.schema.get_field_index(name)
            table = table.set_column(i, name, table.column(i).cast(pa.string()))
    validate_columns(table.schema, url, required)
    return conform_types(table.replace_schema_metadata(None))
