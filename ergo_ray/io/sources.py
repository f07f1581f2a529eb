"""Survey reading: find the objects of a mock or ingested folder and read them unit by unit.

A folder holds one of three layouts (detected from the files, see the README's "Data
formats"): raw Parquet shards under ``shards/``, TNG-layout mock FITS files
(``shalo_*_HSC_GRI.fits``), or HSC-SSP service cutouts (``{lineno}-cutout-HSC-{F}-...fits``,
three files per object). :func:`discover` lists the work as small picklable *units* (one raw
shard, or up to ``max_objects`` FITS objects with their catalogue rows) that Ray tasks can
read independently; :func:`read_unit` yields ``(row, Cutout)`` per object, or
``(row, BadObjectError)`` for an object that cannot be read. A bad file never stops a read.

Every file under the folder is accounted for: it is read (an image of an object, a
table under ``catalog/``, ``truth/`` or ``errors/``, ergo_ray's ``_``/``.`` bookkeeping),
or it becomes a unit of kind ``unrecognised`` whose one row is an error with the reason
``unrecognised_file`` or ``unsupported_compression``. An image file with no row in the
catalogue joined to it is an object with the reason ``no_catalog_row``. Which file is what
is :mod:`ergo_ray.io.layouts`' business.
"""

from __future__ import annotations

import logging
import posixpath
from collections.abc import Callable, Iterator
from typing import TYPE_CHECKING, Any

from ergo_ray.errors import BadObjectError, FitsFormatError, InputError, StorageError
from ergo_ray.io import storage as st
from ergo_ray.io.catalog import CATALOG_DIR, read_catalog
from ergo_ray.io.cutout import Cutout
from ergo_ray.io.fits_hsc import hsc_cutout_name, read_hsc_cutout
from ergo_ray.io.fits_tng import read_tng_mock
from ergo_ray.io.layouts import (
    FORMATS,
    UNRECOGNISED,
    Unit,
    detect_format,
    hsc_items,
    is_shard,
    relative_name,
    tng_items,
    unrecognised_units,
)
from ergo_ray.io.prefetch import Prefetcher
from ergo_ray.io.shards import iter_raw_shard
from ergo_ray.types import RAW_BANDS

if TYPE_CHECKING:
    from ergo_ray.config.schema import StorageConfig

__all__ = ["discover", "iter_survey", "read_unit"]

log = logging.getLogger("ergo_ray")


def _load_rows(
    url: str, catalog_url: str | None, storage: StorageConfig | None
) -> list[dict[str, Any]] | None:
    if catalog_url is None:
        if not st.exists(st.join(url, CATALOG_DIR), storage):
            return None
        catalog_url = url
    table = read_catalog(catalog_url, storage, required=("object_id",))
    return table.to_pylist()


def discover(
    url: str,
    storage: StorageConfig | None = None,
    catalog_url: str | None = None,
    max_objects: int = 64,
) -> list[Unit]:
    """List the reading units of a survey folder.

    Parameters
    ----------
    url : str
        Folder written by ``ergo-ray mock`` or an ingest stage, a folder of TNG mock files or
        of HSC-SSP service cutouts, or one raw shard file.
    storage : StorageConfig, optional
        Storage settings.
    catalog_url : str, optional
        Catalogue to join to FITS files (default: ``URL/catalog`` when it exists). TNG rows
        are matched on the base name of their ``file`` column, HSC rows on
        ``cutout_lineno``. Without a catalogue, rows are made from the file names.
    max_objects : int
        Objects per FITS unit.

    Returns
    -------
    list of Unit
        Dicts with ``kind`` (``shards``, ``tng-fits``, ``hsc-fits``), ``base`` (the folder)
        and either ``url`` (one shard) or ``items`` (objects with their ``row`` and files);
        then one ``unrecognised`` unit (``url``, ``reason``, ``message``) per file
        no reader knows.

    Raises
    ------
    InputError
        If the folder holds none of the three layouts.
    StorageError
        If it cannot be listed.
    """
    loc = st.locate(url)
    if loc.url.endswith(".parquet"):
        return [{"kind": "shards", "base": posixpath.dirname(loc.url), "url": loc.url}]
    files = st.list_files(url, storage)
    fmt = detect_format(files)
    if fmt is None:
        msg = (
            f"{st.redact(url)}: no survey data found (expected shards/part-*.parquet, "
            f"shalo_*_HSC_GRI.fits or *-cutout-HSC-*.fits files)"
        )
        raise InputError(msg, url)
    base = loc.url
    others = unrecognised_units(files, base, fmt)
    if others:
        log.warning(
            "%s: %d file(s) no reader knows (e.g. %s); each becomes an error row",
            st.redact(url),
            len(others),
            st.redact(others[0]["url"]),
        )
    if fmt == "shards":
        shards = [
            {"kind": "shards", "base": base, "url": f} for f in files if is_shard(f)
        ]
        return shards + others
    rows = _load_rows(url, catalog_url, storage)
    items = tng_items(files, base, rows) if fmt == "tng-fits" else hsc_items(files, base, rows)
    log.debug("discovered %d %s objects under %s", len(items), fmt, st.redact(url))
    size = max(1, int(max_objects))
    units = [
        {"kind": fmt, "base": base, "items": items[i : i + size]}
        for i in range(0, len(items), size)
    ]
    return units + others


def _reason(err: Exception) -> str:
    text = str(err)
    if isinstance(err, BadObjectError) and err.reason:
        return err.reason
    if isinstance(err, StorageError):
        return "missing_file" if "no such file" in text else "unreadable_file"
    for key, code in (
        ("not a FITS file", "not_fits"),
        ("truncated", "truncated"),
        ("no HDU named", "missing_hdu"),
        ("missing band", "missing_band"),
        ("shape", "bad_shape"),
        ("expected a 2-D", "bad_shape"),
        ("corrupt", "corrupt_file"),
    ):
        if key in text:
            return code
    return "unreadable_file"


def _bad(err: Exception, object_id: str | None) -> BadObjectError:
    if isinstance(err, BadObjectError):
        return BadObjectError(str(err), err.object_id or object_id, err.reason)
    return BadObjectError(str(err), object_id, _reason(err))


def read_unit(
    unit: Unit, storage: StorageConfig | None = None
) -> Iterator[tuple[dict[str, Any], Cutout | BadObjectError]]:
    """Read the objects of one unit.

    Parameters
    ----------
    unit : Unit
        From :func:`discover`.
    storage : StorageConfig, optional
        Storage settings.

    Yields
    ------
    tuple of (dict, Cutout or BadObjectError)
        The catalogue row and its cutout, or a :class:`BadObjectError` whose message names
        the file and the problem and whose ``reason`` is a short code (``missing_band``,
        ``missing_file``, ``not_fits``, ``truncated``, ``missing_hdu``, ``bad_shape``,
        ``all_nan``, ``unreadable_file``, ``no_catalog_row``). An unreadable raw shard,
        and a file no reader knows (``unrecognised_file``, ``unsupported_compression``),
        yield one error with ``row = {"object_id": None, "file": ...}``.
    """
    kind = unit["kind"]
    if kind == "shards":
        yield from _read_shard_unit(unit, storage)
    elif kind == UNRECOGNISED:
        row = {"object_id": None, "file": relative_name(unit["url"], unit["base"])}
        yield row, BadObjectError(unit["message"], None, unit["reason"])
    elif kind in ("tng-fits", "hsc-fits") and st.locate(unit["base"]).scheme == "file":
        yield from _read_fits_unit(unit, storage, st.read_bytes)
    elif kind in ("tng-fits", "hsc-fits"):
        # object storage: many small GETs, issued concurrently rather than in turn
        with Prefetcher(_unit_files(unit), storage) as files:
            yield from _read_fits_unit(unit, storage, files.read)
    else:
        msg = f"unknown unit kind {kind!r}; expected one of {', '.join(FORMATS)}"
        raise InputError(msg)


def _unit_files(unit: Unit) -> list[str]:
    """Return the files of a FITS unit, in the order its objects read them."""
    items = [item for item in unit["items"] if not item.get("error")]
    if unit["kind"] == "tng-fits":
        return [item["url"] for item in items]
    return [
        item["files"][b]
        for item in items
        if all(b in item["files"] for b in RAW_BANDS)
        for b in RAW_BANDS
    ]


def _read_fits_unit(
    unit: Unit, storage: StorageConfig | None, read: Callable[..., bytes]
) -> Iterator[tuple[dict[str, Any], Cutout | BadObjectError]]:
    kind = unit["kind"]
    if kind == "tng-fits":
        for item in unit["items"]:
            row = dict(item["row"])
            oid = row.get("object_id")
            if item.get("error"):
                yield row, BadObjectError(item["error"][1], oid, item["error"][0])
                continue
            try:
                cut, info = read_tng_mock(item["url"], storage, oid, read)
            except (FitsFormatError, BadObjectError, StorageError, InputError) as err:
                yield row, _bad(err, oid)
                continue
            for key in ("redshift", "ra", "dec"):
                if row.get(key) is None and key in info:
                    row[key] = info[key]
            yield row, cut
    else:
        for item in unit["items"]:
            row = dict(item["row"])
            oid = row.get("object_id")
            if item.get("error"):
                yield row, BadObjectError(item["error"][1], oid, item["error"][0])
                continue
            files = item["files"]
            missing = [b for b in RAW_BANDS if b not in files]
            if missing:
                yield row, _missing_bands(item, missing, unit["base"], oid)
                continue
            try:
                cut = read_hsc_cutout(files, storage, oid, read)
            except (FitsFormatError, BadObjectError, StorageError, InputError) as err:
                yield row, _bad(err, oid)
                continue
            yield row, cut


def _missing_bands(
    item: dict[str, Any], missing: list[str], base: str, oid: str | None
) -> BadObjectError:
    lineno, tract = item.get("lineno"), item.get("tract")
    if lineno is None:
        msg = f"object {oid}: no cutout_lineno or file to find its band files under {base}"
    else:
        names = ", ".join(
            hsc_cutout_name(lineno, b, tract if tract is not None else 0)
            if tract is not None
            else f"{lineno}-cutout-HSC-{b.upper()}-*"
            for b in missing
        )
        msg = (
            f"{st.redact(base)}: object {oid} (line {lineno}): missing band file(s) "
            f"{', '.join(missing)} (expected {names})"
        )
    return BadObjectError(msg, oid, "missing_band")


def _read_shard_unit(
    unit: Unit, storage: StorageConfig | None
) -> Iterator[tuple[dict[str, Any], Cutout | BadObjectError]]:
    url = unit["url"]
    rel = relative_name(url, unit["base"])
    try:
        for row, cut in iter_raw_shard(url, storage):
            row.setdefault("file", rel)
            yield row, cut
    except (InputError, StorageError) as err:
        yield {"object_id": None, "file": rel}, _bad(err, None)


def iter_survey(
    url: str, storage: StorageConfig | None = None, catalog_url: str | None = None
) -> Iterator[tuple[dict[str, Any], Cutout | BadObjectError]]:
    """Read every object of a survey folder in order (a convenience for small sets).

    Parameters
    ----------
    url : str
        Survey folder (see :func:`discover`).
    storage : StorageConfig, optional
        Storage settings.
    catalog_url : str, optional
        Catalogue to join to FITS files.

    Yields
    ------
    tuple of (dict, Cutout or BadObjectError)
        As :func:`read_unit`.
    """
    for unit in discover(url, storage, catalog_url):
        yield from read_unit(unit, storage)
