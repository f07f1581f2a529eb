"""``ingest-sim``: TNG-format HSC mocks + TNG catalogues → an ergo_ray catalogue with truth.

The driver lists the image files and plans one Ray task per chunk of subhalos of one
snapshot. Each task reads only its subhalos' rows of the StellarAssembly and MergerHistory
HDF5 files, computes the truth (:mod:`ergo_ray.ingest.tng`), opens each image once to check
it (an unreadable image goes to the errors table, not the catalogue) and writes its own
catalogue part, so memory does not grow with the number of files. The catalogue's ``file``
column holds each image's path relative to ``--images``, so that
``ergo-ray prepare --in IMAGES --catalog OUT`` reads them unchanged.
"""

from __future__ import annotations

import logging
import warnings
from collections.abc import Sequence
from dataclasses import dataclass
from typing import Any

import numpy as np
import pyarrow as pa

from ergo_ray.config.schema import StorageConfig
from ergo_ray.errors import (
    BadObjectError,
    ErgoRayWarning,
    FitsFormatError,
    InputError,
    StorageError,
)
from ergo_ray.ingest import hdf5
from ergo_ray.ingest.tng import (
    parse_image_name,
    read_snapshot_table,
    truth_from_catalogues,
)
from ergo_ray.io import layouts, storage
from ergo_ray.io.catalog import part_name, rows_to_table, write_part

log = logging.getLogger("ergo_ray")

ERRORS_DIR = "errors"


@dataclass(frozen=True)
class SimIngestOptions:
    """Plain arguments of one ingest-sim run (see :func:`run_ingest_sim`)."""

    images: str
    assembly: str
    mergers: str
    snapshots: str
    domain: str
    out: str
    sublink: str | None = None
    min_log_mstar: float = 9.0
    snap_min: int = 72
    snap_max: int = 91
    chunk: int = 128


def _rel(url: str, base: str) -> str:
    base = base.rstrip("/")
    return url[len(base) + 1:] if url.startswith(base + "/") else url.rsplit("/", 1)[-1]


def read_root_ids(url: str, keys: set[tuple[int, int]], store: StorageConfig | None
                  ) -> dict[tuple[int, int], int]:
    """Map (snapshot, Subfind ID) → SubLink ``RootDescendantID`` for the wanted keys.

    Parameters
    ----------
    url : str
        An HDF5 SubLink tree file (datasets ``SnapNum``, ``SubfindID``, ``RootDescendantID``)
        or a Parquet/CSV table with those columns.
    keys : set of tuple of (int, int)
        The (snapshot, Subfind ID) pairs needed.
    store : StorageConfig, optional
        Storage settings.

    Returns
    -------
    dict
        The mapping for the keys found.

    Raises
    ------
    InputError
        If the file lacks one of the three columns.
    """
    cols = ("SnapNum", "SubfindID", "RootDescendantID")
    if url.endswith((".hdf5", ".h5")):
        import h5py

        fs, path = storage.fsspec_fs(url, store)
        try:
            with fs.open(path, "rb") as fh, h5py.File(fh, "r") as h5:
                missing = [c for c in cols if c not in h5]
                if missing:
                    msg = f"{storage.redact(url)}: SubLink file lacks {missing}"
                    raise InputError(msg, url)
                snap, sub, root = (np.asarray(h5[c][:]) for c in cols)
        except OSError as err:
            msg = f"{storage.redact(url)}: not a readable HDF5 file ({err})"
            raise InputError(msg, url) from err
    else:
        from ergo_ray.io.user_catalog import read_user_catalog

        table = read_user_catalog(url, store, required=cols)
        snap, sub, root = (np.asarray(table.column(c).to_numpy(zero_copy_only=False)) for c in cols)
    packed = snap.astype(np.int64) * (1 << 32) + sub.astype(np.int64)
    want = np.array([s * (1 << 32) + i for s, i in keys], dtype=np.int64)
    sel = np.isin(packed, want)
    rows = zip(snap[sel], sub[sel], root[sel], strict=True)
    return {(int(s), int(i)): int(r) for s, i, r in rows}


def ingest_chunk(opts: SimIngestOptions, snap: int, files: Sequence[tuple[int, int, str]],
                 snapshots: dict[int, float], roots: dict[tuple[int, int], int] | None,
                 part: int, store: StorageConfig | None) -> dict[str, int]:
    """Ingest the images of one chunk of subhalos of one snapshot and write its parts.

    Parameters
    ----------
    opts : SimIngestOptions
        Run options.
    snap : int
        Snapshot of every file in the chunk.
    files : sequence of (subhalo, projection, url)
        The chunk's image files.
    snapshots : dict
        Snapshot → redshift.
    roots : dict, optional
        (snapshot, subhalo) → RootDescendantID.
    part : int
        Part number of the outputs.
    store : StorageConfig, optional
        Storage settings.

    Returns
    -------
    dict
        Counts: ``rows``, ``errors``, ``selected_out`` (below the mass cut).
    """
    from ergo_ray.io.fits_tng import read_tng_mock

    subs = np.array([f[0] for f in files], dtype=np.int64)
    asm_url = hdf5.find_catalogue(opts.assembly, hdf5.ASSEMBLY_NAMES, snap, store)
    mrg_url = hdf5.find_catalogue(opts.mergers, hdf5.MERGER_NAMES, snap, store)
    asm = hdf5.read_rows(asm_url, hdf5.ASSEMBLY_FIELDS, subs, store)
    mrg = hdf5.read_rows(mrg_url, hdf5.MERGER_FIELDS, subs, store)
    truth = truth_from_catalogues(
        snap=snap, stellar_exsitu=asm["StellarMassExSitu"], stellar_total=asm["StellarMassTotal"],
        snap_last_major=mrg["SnapNumLastMajorMerger"], mass_last_major=mrg["MassLastMajorMerger"],
        snapshots=snapshots, source=f"{storage.redact(asm_url)} / {storage.redact(mrg_url)}",
    )
    rows: list[dict[str, Any]] = []
    errors: list[dict[str, Any]] = []
    cut = 0
    for k, (sub, proj, url) in enumerate(files):
        if not np.isfinite(truth["log_mstar"][k]) or truth["log_mstar"][k] < opts.min_log_mstar:
            cut += 1
            continue
        oid = f"{opts.domain}-{snap:03d}-{sub}-v{proj}"
        root = (f"{opts.domain}-root-{roots[(snap, sub)]}" if roots and (snap, sub) in roots
                else f"{opts.domain}-{snap:03d}-{sub}")
        try:
            _, info = read_tng_mock(url, store, oid)
        except (FitsFormatError, BadObjectError, StorageError, InputError) as err:
            errors.append({"object_id": oid, "input_url": storage.redact(url),
                           "reason": getattr(err, "reason", None) or type(err).__name__,
                           "message": str(err)})
            continue
        row = {"object_id": oid, "root_id": root, "domain": opts.domain, "projection": proj,
               **{key: float(v[k]) for key, v in truth.items()},
               "ra": info.get("ra"), "dec": info.get("dec"), "i_mag": info.get("apmag_i"),
               "snap": snap, "subhalo": int(sub),
               "file": _rel(url, storage.locate(opts.images).url)}
        rows.append(row)
    if rows:
        write_part(storage.join(opts.out, "catalog", part_name(part)), rows_to_table(rows), store)
    if errors:
        write_part(storage.join(opts.out, ERRORS_DIR, part_name(part)),
                   pa.Table.from_pylist(errors),
                   store, kind="errors")
    return {"rows": len(rows), "errors": len(errors), "selected_out": cut}


def plan_chunks(image_urls: Sequence[str], snap_min: int, snap_max: int, chunk: int
                ) -> list[tuple[int, list[tuple[int, int, str]]]]:
    """Group image files by snapshot into chunks of whole subhalos.

    Returns
    -------
    list of (snap, files)
        ``files`` are ``(subhalo, projection, url)``; every projection of a subhalo is in the
        same chunk.
    """
    by_snap: dict[int, dict[int, list[tuple[int, int, str]]]] = {}
    for url in image_urls:
        p = parse_image_name(url)
        if p is None or not snap_min <= p.snap <= snap_max:
            continue
        entry = (p.subhalo, p.projection, url)
        by_snap.setdefault(p.snap, {}).setdefault(p.subhalo, []).append(entry)
    plan = []
    for snap in sorted(by_snap):
        subs = sorted(by_snap[snap])
        for i in range(0, len(subs), chunk):
            files = [f for s in subs[i:i + chunk] for f in sorted(by_snap[snap][s])]
            plan.append((snap, files))
    return plan


def run_ingest_sim(opts: SimIngestOptions, store: StorageConfig | None) -> dict[str, int]:
    """Run ingest-sim as Ray tasks; returns the total counts.

    Raises
    ------
    InputError
        If no image matches, or the snapshot table or a catalogue is unusable.
    """
    import ray

    snapshots = read_snapshot_table(storage.read_bytes(opts.snapshots, store), opts.snapshots)
    urls = storage.list_files(opts.images, store)
    base = storage.locate(opts.images).url
    others = layouts.unrecognised_units(urls, base, "tng-fits")
    outside = sum(
        1 for u in urls
        if (p := parse_image_name(u)) and not opts.snap_min <= p.snap <= opts.snap_max
    )
    plan = plan_chunks(urls, opts.snap_min, opts.snap_max, opts.chunk)
    if not plan:
        msg = (f"{storage.redact(opts.images)}: no shalo_*_HSC_GRI(ZY).fits files in snapshots "
               f"{opts.snap_min}-{opts.snap_max}")
        raise InputError(msg, opts.images)
    roots = None
    if opts.sublink:
        keys = {(snap, f[0]) for snap, files in plan for f in files}
        roots = read_root_ids(opts.sublink, keys, store)
    else:
        warnings.warn("no --sublink tree given: root_id is per subhalo and snapshot, so splits may "
                      "put snapshots of one lineage in different splits", ErgoRayWarning,
                      stacklevel=2)
    roots_by_snap: dict[int, dict[tuple[int, int], int]] = {}
    for key, value in (roots or {}).items():
        roots_by_snap.setdefault(key[0], {})[key] = value
    task = ray.remote(num_cpus=0.5, max_retries=3)(ingest_chunk)
    pending = [task.remote(opts, snap, files, snapshots, roots_by_snap.get(snap), i, store)
               for i, (snap, files) in enumerate(plan)]
    totals = {"rows": 0, "errors": 0, "selected_out": 0, "outside_snap_range": outside}
    if others:  # every file is accounted for: one error row per file no reader knows
        errors = [{"object_id": None, "input_url": storage.redact(u["url"]),
                   "reason": u["reason"], "message": u["message"]} for u in others]
        write_part(storage.join(opts.out, ERRORS_DIR, part_name(len(plan))),
                   pa.Table.from_pylist(errors), store, kind="errors")
        totals["errors"] += len(errors)
    done = 0
    while pending:
        ready, pending = ray.wait(pending, num_returns=1)
        for counts in ray.get(ready):
            for key, value in counts.items():  # a chunk's rows, errors and cuts
                totals[key] += value
        done += 1
        if done % 20 == 0 or not pending:
            log.info("ingest-sim: %d/%d chunks, %d galaxies-projections, %d errors", done,
                     len(plan), totals["rows"], totals["errors"])
    return totals
