"""``ergo-ray prepare`` as a library: raw cutouts → prepared shards, on Ray Data.

The driver lists the input's *units* (:func:`ergo_ray.io.sources.discover`: one raw shard,
or a group of FITS objects) and runs one CPU task per unit
(``ray.data.from_items(units).map_batches(prepare_units, batch_size=1)``). A task reads its
objects (:func:`~ergo_ray.io.sources.read_unit`), prepares each with
:func:`~ergo_ray.preprocess.prepare_image`, draws the split from ``root_id``, and writes

* ``OUT/shards/part-{unit:05d}-{k:03d}.parquet`` — the good rows, at most
  ``preprocess.rows_per_file`` per file: catalogue columns, ``r50_px``, ``r90_px``,
  ``petro_r_px``, ``crop_px``, ``split`` and ``image`` (fixed_size_list<uint8>[3·S·S],
  channels i, r, g); KV metadata ``ergo_ray.kind=prepared-shard``,
  ``ergo_ray.image_shape=3,S,S``, ``ergo_ray.schema``, ``ergo_ray.version``;
* ``OUT/errors/part-{unit:05d}.parquet`` — one row per object that could not be read or
  prepared: ``object_id``, ``input_url``, ``reason`` (a short code), ``message``;
* ``OUT/_parts/unit-{unit:05d}.json`` — the unit's counts, written last: a unit with this
  marker is complete, so re-running the same command resumes (``overwrite`` starts again).

Files are written atomically under deterministic names, so a retried task replaces its own
output and every object lands exactly once. A bad object never stops the job; any other
exception fails it, naming the unit. A separate truth table (``IN/truth/``) is copied
through to ``OUT/truth/``.
"""

from __future__ import annotations

import hashlib
import json
import logging
import posixpath
import time
from collections import Counter
from collections.abc import Mapping
from typing import TYPE_CHECKING, Any

import numpy as np
import pyarrow as pa

from ergo_ray import __version__
from ergo_ray.errors import BadObjectError, InputError
from ergo_ray.io import storage as st
from ergo_ray.io.catalog import TRUTH_DIR, part_name, rows_to_table, write_part
from ergo_ray.io.cutout import Cutout
from ergo_ray.io.schemas import PREPARED_FIELDS
from ergo_ray.preprocess.pipeline import prepare_image
from ergo_ray.preprocess.split import assign_split

if TYPE_CHECKING:
    from ergo_ray.config.schema import RunConfig, StorageConfig

__all__ = [
    "ERRORS_DIR",
    "ERROR_SCHEMA",
    "PARTS_DIR",
    "PREPARED_KIND",
    "SHARDS_DIR",
    "prepare_survey",
    "prepare_units",
    "process_unit",
]

log = logging.getLogger("ergo_ray")

PREPARED_KIND = "prepared-shard"
SHARDS_DIR = "shards"
ERRORS_DIR = "errors"
PARTS_DIR = "_parts"
#: Columns of the errors table.
ERROR_SCHEMA = pa.schema(
    [
        pa.field("object_id", pa.string()),
        pa.field("input_url", pa.string()),
        pa.field("reason", pa.string()),
        pa.field("message", pa.string()),
    ]
)
#: Row columns never copied to a prepared shard (raw pixels and their shape).
_RAW_ONLY = ("image", "mask", "variance", "height", "width")
_PREPARED_TYPES = {f.name: f.type for f in PREPARED_FIELDS}


def _input_url(row: Mapping[str, Any], unit: Mapping[str, Any], source: str = "") -> str:
    """Best URL for an object: the reader's source, else its catalogue file, else the unit."""
    if source and ("/" in source or source.startswith("s3:")):
        return source
    if unit.get("kind") == "shards":
        return str(unit["url"])
    f = row.get("file")
    if f:
        return st.join(str(unit["base"]), str(f))
    return str(unit.get("url") or unit.get("base") or "")


def _error_row(row: Mapping[str, Any], unit: Mapping[str, Any], err: BadObjectError,
               source: str = "") -> dict[str, Any]:
    oid = row.get("object_id") or err.object_id
    return {
        "object_id": None if oid is None else str(oid),
        "input_url": st.redact(_input_url(row, unit, source)),
        "reason": err.reason or "bad_object",
        "message": str(err),
    }


def process_unit(
    unit: Mapping[str, Any],
    index: int,
    out_url: str,
    storage: StorageConfig | None,
    params: Mapping[str, Any],
) -> dict[str, Any]:
    """Read, prepare and write one unit; return its counts.

    Parameters
    ----------
    unit : mapping
        A unit from :func:`~ergo_ray.io.sources.discover`.
    index : int
        The unit's number (names its output files).
    out_url : str
        Output folder.
    storage : StorageConfig, optional
        Storage settings.
    params : mapping
        ``size``, ``crop_factor``, ``stretch``, ``central_box_px``, ``detect_nsigma``,
        ``min_area_px``, ``rows_per_file``, ``split_fractions``, ``split_seed``.

    Returns
    -------
    dict
        ``unit``, ``ok``, ``errors``, ``reasons`` (reason → count), ``files``.
    """
    rows, images, errors = _prepare_objects(unit, storage, params)
    files = _write_shards(rows, images, index, out_url, storage, params) if rows else []
    if errors:
        table = pa.Table.from_pylist(errors, schema=ERROR_SCHEMA)
        write_part(st.join(out_url, ERRORS_DIR, part_name(index)), table, storage,
                   kind="prepare-errors")
    counts = {
        "unit": index,
        "ok": len(rows),
        "errors": len(errors),
        "reasons": dict(Counter(e["reason"] for e in errors)),
        "files": len(files),
    }
    st.write_bytes(st.join(out_url, PARTS_DIR, f"unit-{index:05d}.json"),
                   json.dumps(counts).encode(), storage)
    return counts


def _prepare_objects(
    unit: Mapping[str, Any], storage: StorageConfig | None, params: Mapping[str, Any]
) -> tuple[list[dict[str, Any]], list[np.ndarray], list[dict[str, Any]]]:
    """Read and prepare the objects of a unit: good rows and their images, and error rows."""
    from ergo_ray.io.sources import read_unit

    size = int(params["size"])
    kw = {k: params[k] for k in ("crop_factor", "stretch", "central_box_px", "detect_nsigma",
                                 "min_area_px")}
    rows: list[dict[str, Any]] = []
    images: list[np.ndarray] = []
    errors: list[dict[str, Any]] = []
    for row, item in read_unit(dict(unit), storage):
        if isinstance(item, BadObjectError):
            errors.append(_error_row(row, unit, item))
            continue
        cut: Cutout = item
        try:
            img, radii = prepare_image(cut, size=size, **kw)
        except BadObjectError as err:
            errors.append(_error_row(row, unit, err, cut.source))
            continue
        clean = {k: v for k, v in row.items() if k not in _RAW_ONLY}
        clean.update(radii)
        rows.append(clean)
        images.append(img)
    return rows, images, errors


def _write_shards(rows: list[dict[str, Any]], images: list[np.ndarray], index: int,
                  out_url: str, storage: StorageConfig | None,
                  params: Mapping[str, Any]) -> list[str]:
    """Draw the rows' splits and write them with their images as the unit's shards."""
    size = int(params["size"])
    files: list[str] = []
    roots = [str(r.get("root_id") or r.get("object_id")) for r in rows]
    splits = assign_split(roots, tuple(params["split_fractions"]), int(params["split_seed"]))
    for r, s in zip(rows, splits, strict=True):
        r["split"] = str(s)
    per = max(1, int(params["rows_per_file"]))
    meta = {"ergo_ray.image_shape": f"3,{size},{size}",
            "ergo_ray.preprocess": json.dumps(params.get("preprocess", {}), sort_keys=True)}
    for k, start in enumerate(range(0, len(rows), per)):
        chunk = rows[start : start + per]
        table = rows_to_table(chunk, types=_PREPARED_TYPES)
        flat = np.stack(images[start : start + per]).reshape(-1)
        table = table.append_column(
            pa.field("image", pa.list_(pa.uint8(), 3 * size * size)),
            pa.FixedSizeListArray.from_arrays(pa.array(flat, type=pa.uint8()),
                                              3 * size * size),
        )
        url = st.join(out_url, SHARDS_DIR, part_name(index, k))
        write_part(url, table, storage, kind=PREPARED_KIND, extra_meta=meta)
        files.append(url)
    return files


def prepare_units(batch: dict[str, np.ndarray], *, out_url: str,
                  storage: StorageConfig | None, params: Mapping[str, Any]
                  ) -> dict[str, np.ndarray]:
    """Ray Data UDF: run :func:`process_unit` on each unit of a batch (``batch_size=1``).

    Parameters
    ----------
    batch : dict of numpy.ndarray
        Columns ``index`` (int) and ``unit`` (JSON text of a unit).
    out_url : str
        Output folder.
    storage : StorageConfig, optional
        Storage settings.
    params : mapping
        See :func:`process_unit`.

    Returns
    -------
    dict of numpy.ndarray
        One row per unit: ``unit``, ``ok``, ``errors``, ``files`` and ``reasons`` (JSON).
    """
    out: dict[str, list[Any]] = {"unit": [], "ok": [], "errors": [], "files": [], "reasons": []}
    for idx, text in zip(batch["index"], batch["unit"], strict=True):
        c = process_unit(json.loads(str(text)), int(idx), out_url, storage, params)
        for key in ("unit", "ok", "errors", "files"):
            out[key].append(int(c[key]))
        out["reasons"].append(json.dumps(c["reasons"]))
    return {k: np.asarray(v) for k, v in out.items()}


def _params(cfg: RunConfig) -> dict[str, Any]:
    p = cfg.preprocess
    return {
        "size": p.size,
        "crop_factor": p.crop_factor,
        "stretch": p.stretch,
        "central_box_px": p.central_box_px,
        "detect_nsigma": p.detect_nsigma,
        "min_area_px": p.min_area_px,
        "rows_per_file": p.rows_per_file,
        "split_fractions": [cfg.split.train, cfg.split.val, cfg.split.test],
        "split_seed": cfg.split.seed,
        "preprocess": p.model_dump(mode="json"),
    }


def _check_folders(in_url: str, out_url: str) -> None:
    a, b = st.locate(in_url).url.rstrip("/"), st.locate(out_url).url.rstrip("/")
    if a == b or b.startswith(a + "/") or a.startswith(b + "/"):
        msg = (f"--out {st.redact(out_url)} must not be --in {st.redact(in_url)} or lie "
               f"inside it (or contain it)")
        raise InputError(msg, out_url)


def _plan_id(units: list[dict[str, Any]], params: Mapping[str, Any]) -> str:
    text = json.dumps({"units": units, "params": params}, sort_keys=True, default=str)
    return hashlib.sha256(text.encode()).hexdigest()[:16]


def _start_output(out_url: str, plan_id: str, storage: StorageConfig | None,
                  overwrite: bool) -> set[int]:
    """Clear or resume the output; return the indices of units already complete."""
    plan_url = st.join(out_url, PARTS_DIR, "plan.json")
    if overwrite:
        for sub in (SHARDS_DIR, ERRORS_DIR, TRUTH_DIR, PARTS_DIR):
            st.remove(st.join(out_url, sub), storage, recursive=True)
    elif st.exists(plan_url, storage):
        old = json.loads(st.read_bytes(plan_url, storage)).get("plan_id")
        if old != plan_id:
            msg = (f"{st.redact(out_url)} holds a prepare run of other inputs or settings; "
                   f"choose another --out or pass --overwrite")
            raise InputError(msg, out_url)
    elif st.exists(st.join(out_url, SHARDS_DIR), storage):
        msg = (f"{st.redact(out_url)}/shards exists but was not written by this prepare run; "
               f"choose another --out or pass --overwrite")
        raise InputError(msg, out_url)
    st.write_bytes(plan_url, json.dumps({"plan_id": plan_id}).encode(), storage)
    done: set[int] = set()
    parts = st.join(out_url, PARTS_DIR)
    for f in st.list_files(parts, storage, suffixes=(".json",)):
        name = posixpath.basename(f)
        if name.startswith("unit-"):
            done.add(int(name[5:10]))
    return done


def _copy_truth(in_url: str, out_url: str, storage: StorageConfig | None) -> int:
    src = st.join(in_url, TRUTH_DIR)
    if not st.exists(src, storage):
        return 0
    n = 0
    for f in st.list_files(src, storage, suffixes=(".parquet",)):
        rel = f[len(src.rstrip("/")) + 1 :]
        st.write_bytes(st.join(out_url, TRUTH_DIR, rel), st.read_bytes(f, storage), storage)
        n += 1
    return n


def prepare_survey(
    in_url: str,
    out_url: str,
    cfg: RunConfig,
    catalog_url: str | None = None,
    overwrite: bool = False,
) -> dict[str, Any]:
    """Prepare every object of a survey folder on Ray Data.

    Parameters
    ----------
    in_url : str
        Raw input: a mock/ingested folder (raw shards, TNG FITS, HSC FITS) or one shard.
    out_url : str
        Output folder.
    cfg : RunConfig
        ``preprocess``, ``split`` and ``storage`` sections are used. Ray must be running.
    catalog_url : str, optional
        Catalogue to join to FITS files (default: ``IN/catalog`` when present).
    overwrite : bool
        Delete a previous prepare run in ``out_url`` instead of resuming it.

    Returns
    -------
    dict
        ``ok``, ``errors``, ``reasons`` (reason → count), ``units``, ``units_resumed``,
        ``files``, ``truth_files``, ``seconds``.

    Raises
    ------
    InputError
        If the input holds no survey data, or ``out_url`` holds another run.
    StorageError
        If a URL cannot be read or written.
    """
    from ergo_ray.io.sources import discover

    t0 = time.perf_counter()
    _check_folders(in_url, out_url)
    storage = cfg.storage
    params = _params(cfg)
    max_objects = max(1, cfg.preprocess.rows_per_file)
    units = discover(in_url, storage, catalog_url, max_objects=max_objects)
    done = _start_output(out_url, _plan_id(units, params), storage, overwrite)
    todo = [{"index": i, "unit": json.dumps(u, default=str)}
            for i, u in enumerate(units) if i not in done]
    log.info("prepare: %d units (%d already complete) from %s", len(units), len(done),
             st.redact(in_url))
    results = _run_units(todo, out_url, storage, params) if todo else []
    counts = _sum_counts(results, done, out_url, storage)
    truth = _copy_truth(in_url, out_url, storage)
    return {
        "ok": counts["ok"],
        "errors": counts["errors"],
        "reasons": dict(counts["reasons"]),
        "units": len(units),
        "units_resumed": len(done),
        "files": counts["files"],
        "truth_files": truth,
        "seconds": time.perf_counter() - t0,
        "version": __version__,
    }


def _run_units(todo: list[dict[str, Any]], out_url: str, storage: StorageConfig | None,
               params: Mapping[str, Any]) -> list[dict[str, Any]]:
    """Prepare the units ``todo`` on Ray Data, one CPU task each; return their count rows."""
    import ray

    ds = ray.data.from_items(todo, override_num_blocks=len(todo))
    ds = ds.map_batches(
        prepare_units,
        batch_size=1,
        batch_format="numpy",
        num_cpus=1,
        fn_kwargs={"out_url": out_url, "storage": storage, "params": params},
    )
    return list(ds.iter_rows())


def _sum_counts(results: list[dict[str, Any]], done: set[int], out_url: str,
                storage: StorageConfig | None) -> dict[str, Any]:
    """Sum ``ok``, ``errors``, ``files`` and ``reasons`` over the run and resumed units."""
    totals: Counter[str] = Counter()
    ok = err = files = 0
    for r in results:
        ok += int(r["ok"])
        err += int(r["errors"])
        files += int(r["files"])
        totals.update(json.loads(str(r["reasons"])))
    for i in done:  # resumed units: their counts are in the markers
        c = json.loads(st.read_bytes(st.join(out_url, PARTS_DIR, f"unit-{i:05d}.json"), storage))
        ok += int(c["ok"])
        err += int(c["errors"])
        files += int(c["files"])
        totals.update(c["reasons"])
    return {"ok": ok, "errors": err, "files": files, "reasons": totals}
