"""The input units of a catalogue job: prepared shards, their error files, or raw input."""

from __future__ import annotations

from collections.abc import Mapping
from typing import TYPE_CHECKING, Any

import pyarrow as pa
import pyarrow.parquet as pq

from ergo_ray.errors import InputError
from ergo_ray.infer.manifest import WorkUnit
from ergo_ray.io import storage
from ergo_ray.io.schemas import META_KIND

if TYPE_CHECKING:
    from ergo_ray.config.schema import StorageConfig


def _file_kind(url: str, storage_cfg: StorageConfig | None) -> bytes | None:
    fs, path = storage.arrow_fs(url, storage_cfg)
    try:
        md = pq.read_schema(path, filesystem=fs).metadata or {}
    except (OSError, pa.ArrowException):
        return None
    return md.get(META_KIND)


def discover_units(in_url: str, storage_cfg: StorageConfig | None = None
                   ) -> tuple[list[WorkUnit], str]:
    """List the input units of a catalogue job.

    Prepared shards (``URL/shards/*.parquet`` with ``ergo_ray.kind = prepared-shard``) give
    one unit per shard, plus one per ``URL/errors/*.parquet`` file (objects ``prepare``
    rejected, which become error rows). Anything else is raw input, cut into units by
    :func:`ergo_ray.io.sources.discover` (raw shards, HSC or TNG FITS).

    Parameters
    ----------
    in_url : str
        Input URL.
    storage_cfg : StorageConfig, optional
        Storage settings.

    Returns
    -------
    units : list of WorkUnit
        In a deterministic order.
    kind : str
        ``"prepared"`` or ``"raw"``.

    Raises
    ------
    InputError
        If the URL holds nothing readable.
    StorageError
        If ``shards/`` or ``errors/`` exists but cannot be listed (naming the URL).
    """
    if in_url.endswith(".parquet"):
        shards = [in_url]
    else:
        # no shards/ folder: raw input; one that cannot be listed is an error (StorageError)
        shards = storage.list_files(storage.join(in_url, "shards"), storage_cfg,
                                    (".parquet",), missing_ok=True)
    if shards and _file_kind(shards[0], storage_cfg) == b"prepared-shard":
        units = [WorkUnit.make("prepared", storage.redact(u), {"url": u},
                               identity=storage.redact(u)) for u in shards]
        if not in_url.endswith(".parquet"):
            # no errors/ folder: prepare rejected nothing; an unreadable one fails the job,
            # since the objects listed there would otherwise vanish from the catalogue
            errs = storage.list_files(storage.join(in_url, "errors"), storage_cfg,
                                      (".parquet",), missing_ok=True)
            units += [WorkUnit.make("prepare-errors", storage.redact(u), {"url": u},
                                    identity=storage.redact(u)) for u in errs]
        return units, "prepared"
    from ergo_ray.io.sources import discover

    raw = discover(in_url, storage_cfg)
    units = [WorkUnit.make("raw", _raw_source(u), dict(u), identity=_raw_identity(u))
             for u in raw]
    if not units:
        msg = f"{storage.redact(in_url)}: no input found (no prepared shards, raw shards or FITS)"
        raise InputError(msg, source=in_url)
    return units, "raw"


def _raw_identity(unit: Mapping[str, Any]) -> Any:
    """Return what identifies a raw unit: its file, or its objects and their files."""
    if "url" in unit:
        return {"kind": unit.get("kind"), "url": storage.redact(str(unit["url"]))}
    items = [[(it.get("row") or {}).get("object_id"), it.get("url") or it.get("files")]
             for it in unit.get("items", [])]
    return {"kind": unit.get("kind"), "items": items}


def _raw_source(unit: Mapping[str, Any]) -> str:
    if isinstance(unit.get("url"), str):
        return storage.redact(unit["url"])
    items = list(unit.get("items", []))
    base = storage.redact(str(unit.get("base", "")))
    ids = [str((it.get("row") or {}).get("object_id")) for it in items]
    if not ids:
        return base
    span = ids[0] if len(ids) == 1 else f"{ids[0]} .. {ids[-1]}"
    return f"{base} [{len(ids)} objects {span}]"


__all__ = ["discover_units"]
