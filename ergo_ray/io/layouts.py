"""Survey folder layouts: which file of a folder is what, and which object it belongs to.

A survey folder holds one of three layouts (the README's "Data formats"): raw Parquet shards
under ``shards/``, TNG-layout mock FITS files (``shalo_*_HSC_GRI.fits``, one per object), or
HSC-SSP service cutouts (``{lineno}-cutout-HSC-{F}-...fits``, three files per object).
:func:`detect_format` names the layout; :func:`unrecognised_units` accounts for every file no
reader of it knows; :func:`tng_items` and :func:`hsc_items` join the image files to the rows
of the folder's catalogue, an image file without a row becoming an object with the reason
``no_catalog_row``. :mod:`ergo_ray.io.sources` turns these into reading units and reads them.
"""

from __future__ import annotations

import posixpath
from typing import Any

from ergo_ray.io import storage as st
from ergo_ray.io.catalog import CATALOG_DIR, TRUTH_DIR
from ergo_ray.io.fits_common import FITS_SUFFIXES
from ergo_ray.io.fits_hsc import parse_hsc_cutout_name
from ergo_ray.io.fits_tng import parse_tng_mock_name
from ergo_ray.types import RAW_BANDS

__all__ = [
    "FORMATS",
    "SHARDS_DIR",
    "UNRECOGNISED",
    "Unit",
    "detect_format",
    "hsc_items",
    "is_shard",
    "relative_name",
    "tng_items",
    "unrecognised_units",
]

#: A unit of reading work: a small picklable dict (see :func:`ergo_ray.io.sources.discover`).
Unit = dict[str, Any]
#: Layouts a survey folder may have.
FORMATS: tuple[str, ...] = ("shards", "tng-fits", "hsc-fits")
#: The unit kind of a file no reader knows (one error row per file).
UNRECOGNISED = "unrecognised"
SHARDS_DIR = "shards"
#: Folders of tables (Parquet) that a survey folder may hold beside its images.
_TABLE_DIRS = (CATALOG_DIR, TRUTH_DIR, "errors")
#: Whole-file compressions no reader decompresses (``.gz`` and ``.fz`` are read).
_UNSUPPORTED_COMPRESSION = (".bz2", ".xz", ".lzma", ".zst", ".lz4", ".z", ".zip", ".7z",
                            ".tar", ".tgz")
_EXPECTED = {
    "shards": "shards/part-*.parquet",
    "tng-fits": "shalo_{snap}-{subhalo}_v{projection}_HSC_GRI.fits[.gz|.fz]",
    "hsc-fits": "{lineno}-cutout-HSC-{G,R,I}-{tract}-{rerun}.fits[.gz|.fz]",
}


def relative_name(url: str, base: str) -> str:
    """Return a file's path relative to its survey folder (its base name if outside it).

    Parameters
    ----------
    url : str
        File URL.
    base : str
        Survey folder URL.

    Returns
    -------
    str
        E.g. ``"images/shalo_091-1_v0_HSC_GRI.fits"``.
    """
    base = base.rstrip("/")
    return (
        url[len(base) + 1 :] if url.startswith(base + "/") else posixpath.basename(url)
    )


def detect_format(files: list[str]) -> str | None:
    """Return the layout of a list of file URLs (``shards``, ``tng-fits``, ``hsc-fits``).

    Parameters
    ----------
    files : list of str
        File URLs under a survey folder.

    Returns
    -------
    str or None
        The first layout found, in the order of :data:`FORMATS`; None if none.
    """
    if any(is_shard(f) for f in files):
        return "shards"
    if any(parse_tng_mock_name(f) for f in files):
        return "tng-fits"
    if any(parse_hsc_cutout_name(f) for f in files):
        return "hsc-fits"
    return None


def is_shard(url: str) -> bool:
    """Whether a file is a raw Parquet shard (``.parquet`` directly under ``shards/``).

    Parameters
    ----------
    url : str
        File URL.

    Returns
    -------
    bool
        True for a raw shard.
    """
    parent = posixpath.basename(posixpath.dirname(url))
    return url.endswith(".parquet") and parent == SHARDS_DIR


def _recognised(rel: str, fmt: str) -> bool:
    """Whether a file (relative to the folder) is one of the layout's, or a table."""
    parts = rel.split("/")
    if any(p.startswith(("_", ".")) for p in parts):
        return True  # ergo_ray's bookkeeping (``_meta/``, ``_parts/``), hidden files
    if len(parts) > 1 and parts[0] in _TABLE_DIRS and rel.endswith(".parquet"):
        return True
    if fmt == "shards":
        return is_shard(rel)
    if fmt == "tng-fits":
        return parse_tng_mock_name(rel) is not None
    return parse_hsc_cutout_name(rel) is not None


def unrecognised_units(files: list[str], base: str, fmt: str) -> list[Unit]:
    """List the files no reader of a layout knows, one ``unrecognised`` unit each.

    Parameters
    ----------
    files : list of str
        File URLs under ``base``.
    base : str
        The survey folder.
    fmt : str
        Its layout (one of :data:`FORMATS`).

    Returns
    -------
    list of Unit
        ``kind="unrecognised"``, ``base``, ``url``, ``reason`` (``unrecognised_file`` or
        ``unsupported_compression``) and ``message`` (naming the file and why), for
        every file that is neither of the layout nor a table or ergo_ray bookkeeping.
    """
    units = []
    for f in files:
        rel = relative_name(f, base)
        if _recognised(rel, fmt):
            continue
        name = posixpath.basename(rel).lower()
        other = detect_format([f])
        if ".fits." in name and not name.endswith(FITS_SUFFIXES):
            reason = "unsupported_compression"
            why = (
                f"compressed as {posixpath.splitext(name)[1]!r}; FITS files are read "
                f"plain, gzip-compressed (.fits.gz) or tile-compressed (.fits.fz)"
            )
        elif name.endswith(_UNSUPPORTED_COMPRESSION):
            reason = "unsupported_compression"
            why = "a compressed archive no reader opens"
        elif other not in (None, fmt):
            reason = "unrecognised_file"
            why = f"a {other} file in a {fmt} folder (one folder holds one layout)"
        else:
            reason = "unrecognised_file"
            why = f"not a file of the {fmt} layout ({_EXPECTED[fmt]})"
        msg = f"{st.redact(f)}: {why}"
        units.append(
            {"kind": UNRECOGNISED, "base": base, "url": f, "reason": reason,
             "message": msg}
        )
    return units


def tng_items(
    files: list[str], base: str, rows: list[dict[str, Any]] | None
) -> list[dict[str, Any]]:
    """Join the TNG mock files of a folder to its catalogue rows, one item per object.

    Parameters
    ----------
    files : list of str
        File URLs under ``base``.
    base : str
        The survey folder.
    rows : list of dict or None
        Catalogue rows (matched on the base name of their ``file``); None: rows are made
        from the file names.

    Returns
    -------
    list of dict
        ``{"row", "url"}`` per object, in catalogue order, then ``{"row", "url", "error"}``
        for each file no row names (``error = ("no_catalog_row", message)``).
    """
    by_name = {posixpath.basename(f): f for f in files if parse_tng_mock_name(f)}
    if rows is None:
        items = []
        for name, f in sorted(by_name.items()):
            p = parse_tng_mock_name(name)
            assert p is not None
            stem = name.split(".fits")[0]
            row = {
                "object_id": stem,
                "root_id": f"shalo_{p.snap:03d}-{p.subhalo}",
                "projection": p.projection,
                "snap": p.snap,
                "subhalo": p.subhalo,
                "file": relative_name(f, base),
            }
            items.append({"row": row, "url": f})
        return items
    items, used = [], set()
    for row in rows:
        name = posixpath.basename(str(row.get("file") or ""))
        f = by_name.get(name)
        if f is None:
            f = st.join(
                base, str(row.get("file") or f"<no file for {row['object_id']}>")
            )
        used.add(name)
        items.append({"row": row, "url": f})
    for name in sorted(set(by_name) - used):
        f = by_name[name]
        row = {"object_id": name.split(".fits")[0], "file": relative_name(f, base)}
        msg = f"{st.redact(f)}: no row of the catalogue names this file"
        items.append({"row": row, "url": f, "error": ("no_catalog_row", msg)})
    return items


def hsc_items(
    files: list[str], base: str, rows: list[dict[str, Any]] | None
) -> list[dict[str, Any]]:
    """Join the HSC-SSP band files of a folder to its catalogue rows, one item per object.

    Parameters
    ----------
    files : list of str
        File URLs under ``base``.
    base : str
        The survey folder.
    rows : list of dict or None
        Catalogue rows (matched on ``cutout_lineno``, else on the line number in their
        ``file``); None: rows are made from the file names.

    Returns
    -------
    list of dict
        ``{"row", "lineno", "tract", "files"}`` per object (``files``: band → URL, from the
        tract with the most of g, r, i), in catalogue order, then one item with an
        ``error = ("no_catalog_row", message)`` per line number no row names.
    """
    groups: dict[int, dict[int, dict[str, str]]] = {}
    for f in files:
        p = parse_hsc_cutout_name(f)
        if p is not None:  # z, y files too: an object may come without g, r, i
            groups.setdefault(p.lineno, {}).setdefault(p.tract, {})[p.band] = f

    items = []
    if rows is None:
        for lineno in sorted(groups):
            tract, bands = _pick_tract(groups.get(lineno, {}))
            rel = relative_name(next(iter(bands.values())), base)
            row = {
                "object_id": f"hsc-line-{lineno}",
                "root_id": f"hsc-line-{lineno}",
                "cutout_lineno": lineno,
                "tract": tract,
                "file": rel,
            }
            items.append({"row": row, "lineno": lineno, "tract": tract, "files": bands})
        return items
    listed = set()
    for row in rows:
        lineno = row.get("cutout_lineno")
        if lineno is None and row.get("file"):
            parsed = parse_hsc_cutout_name(str(row["file"]))
            lineno = parsed.lineno if parsed else None
        if lineno is None:
            items.append({"row": row, "lineno": None, "tract": None, "files": {}})
            continue
        listed.add(int(lineno))
        tract, bands = _pick_tract(groups.get(int(lineno), {}))
        items.append(
            {"row": row, "lineno": int(lineno), "tract": tract, "files": bands}
        )
    for lineno in sorted(set(groups) - listed):
        items.append(_unlisted_hsc_item(lineno, groups[lineno], base))
    return items


def _pick_tract(tracts: dict[int, dict[str, str]]) -> tuple[int | None, dict[str, str]]:
    """Return the tract of an object and its g, r, i files (tract → band → URL given)."""
    if not tracts:
        return None, {}
    # an object on a tract boundary may come in several tracts: prefer a complete one
    tract = max(
        sorted(tracts), key=lambda t: sum(b in tracts[t] for b in RAW_BANDS)
    )
    return tract, {b: f for b, f in tracts[tract].items() if b in RAW_BANDS}


def _unlisted_hsc_item(
    lineno: int, tracts: dict[int, dict[str, str]], base: str
) -> dict[str, Any]:
    """Return the error item of an object whose line number no catalogue row names."""
    names = sorted(f for t in tracts.values() for f in t.values())
    row = {
        "object_id": f"hsc-line-{lineno}",
        "cutout_lineno": lineno,
        "file": relative_name(names[0], base),
    }
    msg = (
        f"{st.redact(names[0])}: no row of the catalogue has cutout_lineno "
        f"{lineno} ({len(names)} file(s) of this object)"
    )
    return {"row": row, "lineno": lineno, "tract": None, "files": {},
            "error": ("no_catalog_row", msg)}
