"""Exactly-once, resumable bookkeeping of a catalogue job: a manifest of input units.

How a catalogue is made exactly once
------------------------------------
The input is cut into **units**: one prepared or raw shard file, one TNG FITS file, or one
group of HSC objects with their band files (:func:`ergo_ray.io.sources.discover`). Each unit
has a **key**, a hash of its identity (kind + source), so the same input always gives the
same keys. The output folder holds::

    OUT/parts/part-<key>.parquet   one file per unit: every row of that unit, or none
    OUT/_meta/plan.json            the job's fingerprint and the digest of its unit keys
    OUT/_meta/actors/*.json        one small file per model actor (node, pid) as it starts
    OUT/_meta/actors.json          node id -> rows, actor -> rows (written at the end)
    OUT/_SUCCESS                   written last: rows, errors, units, model_id

1. A part is written only when **all** rows of its unit have come back from the model
   actors, in one atomic write (:func:`ergo_ray.io.storage.open_write`: a temporary file
   renamed into place on local disks, one ``PUT`` on S3, which S3 makes atomic). A part is
   therefore complete or absent, never half-written.
2. The part's name depends only on the unit, so writing a unit twice (a retried task, a
   re-run, even two concurrent runs) replaces the same object with the same rows: a
   duplicate file cannot exist. Inside one run, rows of a unit are also de-duplicated by
   their position in the unit before the part is written, so a batch that Ray delivers twice
   after a retry cannot duplicate a row either.
3. A re-run lists ``OUT/parts/`` once and processes only units without a part: an
   interrupted driver, a lost node or a cancelled job costs only the units in flight.
4. ``plan.json`` pins the model (``model_id``), number of samples, seed, representation
   option and the set of unit keys. A re-run whose settings or input differ is refused
   (:class:`~ergo_ray.errors.ConfigError`): parts of two different jobs never mix.
5. ``_SUCCESS`` is written only after every unit of the plan has a part and the
   ``object_id`` column of the whole catalogue has been checked for duplicates.

Failures of processes (a killed actor or worker, an out-of-memory kill, a lost node) are
Ray's job: Ray Data restarts pool actors and retries their tasks indefinitely, and the
driver only counts a unit when its last row has arrived.

Why not Ray Data's checkpointing (``DataContext.checkpoint_config``, beta in 2.60): it needs
a plan that starts with a ``read_*`` and ends with a ``write_*``, whereas our units come from
our own discovery (FITS groups, shards) and are turned into rows by our readers; it loads
every committed ``object_id`` into memory and still re-reads all the input to filter it; its
progress granularity is Ray's write task, not an input file; and it is a global, beta
setting. The manifest skips finished units *without reading them*, works the same on a
laptop disk and on S3, and needs nothing but atomic single-object writes.
"""

from __future__ import annotations

import hashlib
import json
import logging
import posixpath
import re
from collections.abc import Iterable, Mapping, Sequence
from concurrent.futures import ThreadPoolExecutor
from dataclasses import dataclass, field
from datetime import UTC, datetime
from typing import TYPE_CHECKING, Any

import pyarrow as pa
import pyarrow.compute as pc
import pyarrow.parquet as pq

from ergo_ray import __version__
from ergo_ray.errors import CheckpointError, ConfigError, StorageError
from ergo_ray.io import storage
from ergo_ray.io.schemas import META_KIND, META_SCHEMA, META_VERSION, SCHEMA_VERSION

if TYPE_CHECKING:
    from ergo_ray.config.schema import StorageConfig

log = logging.getLogger("ergo_ray")

#: Parquet key-value metadata written into every part.
META_UNIT = b"ergo_ray.unit"
META_SOURCE = b"ergo_ray.source"
META_ROWS = b"ergo_ray.rows"
META_ERRORS = b"ergo_ray.errors"
#: ``ergo_ray.kind`` of a posterior catalogue part.
KIND_POSTERIOR = b"posterior-catalog"

#: Low-cardinality columns of a part, dictionary-encoded; the float summaries and the IDs
#: are unique per row, where dictionary encoding costs 2.6x the write time for nothing.
DICTIONARY_COLUMNS = ("domain", "status", "error")

PLAN_VERSION = 1
_PART_RE = re.compile(r"^part-([0-9a-f]{20})\.parquet$")


def unit_key(kind: str, identity: Any) -> str:
    """Return the deterministic key of an input unit.

    Parameters
    ----------
    kind : str
        ``"prepared"`` or ``"raw"``.
    identity : object
        JSON-serialisable description of the unit (its file URL, or the unit dict of
        :func:`ergo_ray.io.sources.discover`).

    Returns
    -------
    str
        20 hexadecimal characters of the SHA-256 of the canonical JSON.
    """
    text = json.dumps({"kind": kind, "id": identity}, sort_keys=True, default=str)
    return hashlib.sha256(text.encode()).hexdigest()[:20]


@dataclass(frozen=True)
class WorkUnit:
    """One input unit of a catalogue job.

    Attributes
    ----------
    key : str
        Deterministic key (:func:`unit_key`); names the unit's output part.
    kind : str
        ``"prepared"`` (a prepared shard) or ``"raw"`` (a raw unit read by
        :func:`ergo_ray.io.sources.read_unit`).
    source : str
        Human-readable origin (URL, credentials redacted), used in error messages.
    spec : dict
        What the reader needs: ``{"url": ...}`` for a prepared shard, the raw unit
        otherwise. Must be picklable.
    """

    key: str
    kind: str
    source: str
    spec: Mapping[str, Any] = field(default_factory=dict)

    @classmethod
    def make(cls, kind: str, source: str, spec: Mapping[str, Any], identity: Any = None
             ) -> WorkUnit:
        """Build a unit, deriving its key from ``identity`` (default: ``spec``)."""
        return cls(unit_key(kind, spec if identity is None else identity), kind, source,
                   dict(spec))


@dataclass(frozen=True)
class CatalogLayout:
    """Where everything lives under a catalogue's output URL.

    Parameters
    ----------
    out : str
        The ``--out`` URL.
    """

    out: str

    @property
    def parts(self) -> str:
        """Folder of the per-unit parts: the catalogue as a Parquet dataset."""
        return storage.join(self.out, "parts")

    def part(self, key: str) -> str:
        """URL of the part of unit ``key``."""
        return storage.join(self.parts, f"part-{key}.parquet")

    @property
    def meta(self) -> str:
        """Folder of the job's bookkeeping files."""
        return storage.join(self.out, "_meta")

    @property
    def plan(self) -> str:
        """The job's fingerprint and unit digest."""
        return storage.join(self.meta, "plan.json")

    @property
    def success(self) -> str:
        """Completion marker, written last."""
        return storage.join(self.out, "_SUCCESS")

    @property
    def actors_dir(self) -> str:
        """One JSON per model actor, written as it starts."""
        return storage.join(self.meta, "actors")

    @property
    def actors(self) -> str:
        """Rows per node and per actor, written at the end of a run."""
        return storage.join(self.meta, "actors.json")

    @property
    def merged(self) -> str:
        """Optional single-file copy of the catalogue (``--merge``)."""
        return storage.join(self.out, "catalog.parquet")

    @property
    def fits(self) -> str:
        """FITS binary-table export (``--format fits``)."""
        return storage.join(self.out, "catalog.fits")


def units_digest(keys: Iterable[str]) -> str:
    """Return the SHA-256 of the sorted unit keys (identifies a job's input)."""
    h = hashlib.sha256()
    for k in sorted(keys):
        h.update(k.encode())
        h.update(b"\n")
    return h.hexdigest()


def part_metadata(
    base: Mapping[bytes, bytes], unit: WorkUnit, rows: int, errors: int
) -> dict[bytes, bytes]:
    """Return the key-value metadata of one part (job metadata plus the unit's own)."""
    meta = dict(base)
    meta.update({
        META_KIND: KIND_POSTERIOR,
        META_SCHEMA: SCHEMA_VERSION.encode(),
        META_VERSION: __version__.encode(),
        META_UNIT: unit.key.encode(),
        META_SOURCE: unit.source.encode(),
        META_ROWS: str(int(rows)).encode(),
        META_ERRORS: str(int(errors)).encode(),
    })
    return meta


@dataclass
class CatalogStats:
    """What the finished catalogue holds (the content of ``_SUCCESS``)."""

    rows: int
    errors: int
    units: int
    distinct_object_ids: int

    @property
    def duplicates(self) -> int:
        """Rows whose ``object_id`` is not unique in the catalogue."""
        return self.rows - self.distinct_object_ids


class Manifest:
    """The units of a catalogue job and which of them are finished.

    Parameters
    ----------
    out : str
        Output URL of the catalogue.
    units : sequence of WorkUnit
        Every unit of the job's input, in discovery order.
    fingerprint : mapping
        JSON-serialisable settings that change the catalogue's values (model_id, samples,
        seed, representation option, input URL). A re-run must present the same.
    storage_cfg : StorageConfig, optional
        Storage settings for S3 URLs.
    """

    def __init__(
        self,
        out: str,
        units: Sequence[WorkUnit],
        fingerprint: Mapping[str, Any],
        storage_cfg: StorageConfig | None = None,
    ) -> None:
        self.layout = CatalogLayout(out)
        self.units = list(units)
        self.by_key = {u.key: u for u in self.units}
        if len(self.by_key) != len(self.units):
            dup = len(self.units) - len(self.by_key)
            msg = f"{dup} input units share a key; the input lists the same file twice"
            raise ConfigError(msg)
        self.fingerprint = dict(fingerprint)
        self.storage_cfg = storage_cfg

    # ------------------------------------------------------------------ plan
    def open(self) -> bool:
        """Check the output folder against this job, writing ``plan.json`` on the first run.

        Returns
        -------
        bool
            True when an earlier run of the same job left a plan (this run resumes it).

        Raises
        ------
        ConfigError
            If the folder holds a catalogue of a different job (other model, samples, seed,
            representation option or input units).
        CheckpointError
            If ``plan.json`` is unreadable.
        """
        digest = units_digest(self.by_key)
        url = self.layout.plan
        if storage.exists(url, self.storage_cfg):
            try:
                plan = json.loads(storage.read_bytes(url, self.storage_cfg))
            except (ValueError, StorageError) as err:
                msg = f"{storage.redact(url)}: unreadable catalogue plan: {err}"
                raise CheckpointError(msg) from err
            old = plan.get("fingerprint", {})
            diff = sorted(k for k in set(old) | set(self.fingerprint)
                          if old.get(k) != self.fingerprint.get(k))
            if diff:
                detail = "; ".join(
                    f"{k}: {old.get(k)!r} before, {self.fingerprint.get(k)!r} now" for k in diff
                )
                msg = (f"{storage.redact(self.layout.out)} holds a catalogue made with other "
                       f"settings ({detail}); use a new --out")
                raise ConfigError(msg)
            if plan.get("units_digest") != digest:
                msg = (f"{storage.redact(self.layout.out)} holds a catalogue of a different "
                       f"input ({plan.get('n_units')} units before, {len(self.units)} now); "
                       "use a new --out")
                raise ConfigError(msg)
            return True
        plan = {
            "plan_version": PLAN_VERSION,
            "fingerprint": self.fingerprint,
            "n_units": len(self.units),
            "units_digest": digest,
            "created": datetime.now(UTC).isoformat(timespec="seconds"),
        }
        storage.write_bytes(url, json.dumps(plan, indent=2).encode(), self.storage_cfg)
        return False

    # ----------------------------------------------------------------- parts
    def done_keys(self) -> set[str]:
        """Return the keys of this job's units whose part exists (one listing).

        No ``parts/`` folder means no unit is done yet; one that cannot be listed raises
        :class:`~ergo_ray.errors.StorageError` (resuming blind would redo or race with
        parts that exist).
        """
        files = storage.list_files(self.layout.parts, self.storage_cfg, (".parquet",),
                                   missing_ok=True)
        keys = set()
        for f in files:
            m = _PART_RE.match(posixpath.basename(f))
            if m and m.group(1) in self.by_key:
                keys.add(m.group(1))
        return keys

    def pending(self) -> list[WorkUnit]:
        """Return the units still to process, in discovery order."""
        done = self.done_keys()
        return [u for u in self.units if u.key not in done]

    def write_part(self, unit: WorkUnit, table: pa.Table) -> None:
        """Write one unit's rows as its part, atomically.

        Parameters
        ----------
        unit : WorkUnit
            The unit.
        table : pyarrow.Table
            All its rows, with the catalogue schema and metadata.
        """
        with storage.open_write(self.layout.part(unit.key), self.storage_cfg) as fh:
            pq.write_table(table, fh, compression="zstd", use_dictionary=[
                c for c in DICTIONARY_COLUMNS if c in table.column_names])

    def clean_temporary(self) -> int:
        """Remove temporary files left in ``parts/`` by a killed local run.

        Returns
        -------
        int
            Files removed. Object stores never hold any (a part is one ``PUT``).
        """
        loc = storage.locate(self.layout.parts)
        if loc.scheme != "file":
            return 0
        import os

        if not os.path.isdir(loc.path):
            return 0
        removed = 0
        for name in os.listdir(loc.path):
            if ".parquet.tmp-" in name:
                os.remove(os.path.join(loc.path, name))
                removed += 1
        return removed

    # -------------------------------------------------------------- finalize
    def stats(self, threads: int = 8) -> CatalogStats:
        """Read the ``object_id`` and ``status`` columns of every part and count them.

        Raises
        ------
        CheckpointError
            If a unit of the plan has no part.
        """
        missing = [u for u in self.units if u.key not in self.done_keys()]
        if missing:
            msg = (f"{len(missing)} input units have no catalogue part yet "
                   f"(first: {missing[0].source}); re-run the same command to finish")
            raise CheckpointError(msg)

        fs, _ = storage.arrow_fs(self.layout.parts, self.storage_cfg)

        def read(unit: WorkUnit) -> pa.Table:
            path = storage.locate(self.layout.part(unit.key)).path
            return pq.read_table(path, filesystem=fs, columns=["object_id", "status"])

        with ThreadPoolExecutor(max_workers=threads) as pool:
            tables = list(pool.map(read, self.units))
        if not tables:
            return CatalogStats(0, 0, 0, 0)
        ids = pa.chunked_array([t.column("object_id").combine_chunks() for t in tables],
                               type=pa.string())
        status = pa.chunked_array([t.column("status").combine_chunks() for t in tables],
                                  type=pa.string())
        rows = len(ids)
        errors = int(pc.sum(pc.equal(status, "error")).as_py() or 0)
        distinct = int(pc.count_distinct(ids).as_py() or 0)
        return CatalogStats(rows, errors, len(self.units), distinct)

    def finish(self, stats: CatalogStats, extra: Mapping[str, Any] | None = None) -> None:
        """Write ``_SUCCESS`` (last), holding the stats and the fingerprint."""
        body = {
            "rows": stats.rows,
            "errors": stats.errors,
            "units": stats.units,
            "duplicate_rows": stats.duplicates,
            "fingerprint": self.fingerprint,
            "finished": datetime.now(UTC).isoformat(timespec="seconds"),
            **(dict(extra) if extra else {}),
        }
        storage.write_bytes(self.layout.success, json.dumps(body, indent=2).encode(),
                            self.storage_cfg)
