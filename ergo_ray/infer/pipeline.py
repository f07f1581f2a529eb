"""Survey-scale posterior catalogue on Ray Data, exactly once and resumable.

The job (``ergo-ray catalog``)::

    units (driver: discovery, minus units already done)
      └─ read_units            CPU tasks (1 CPU each, their own operator): read a prepared
         │                     shard, or read raw FITS / raw shards and prepare every image
         │                     with ergo_ray.preprocess.prepare_image; each unit's rows are
         │                     cut into blocks of at most ``batch_size`` galaxies
         └─ PosteriorPredictor actor pool (ActorPoolStrategy, GPUs if asked): representation →
            │                  posterior samples → summaries → OOD score, in one pass; each
            │                  actor task is one block, so N actors share the galaxies
            │                  whatever the number of units
            └─ driver          groups rows by unit; as soon as a unit is complete, a write
                               thread writes its part OUT/parts/part-<unit key>.parquet in
                               one atomic write

The reader and the model actors are separate Ray Data operators: the reader's
``map_batches`` is fused with the block-cutting ``repartition(target_num_rows_per_block=...)``
(same remote arguments), and Ray Data never fuses an operator after a repartition into the
actor pool, so reading overlaps with the model instead of running inside the actor.
Rows in flight are bounded independently of the catalogue's size: at most
``readers`` reader tasks run at once (each holding one unit), Ray Data's streaming executor
caps each operator's queued output by its object-store budget, every actor runs at most
:data:`TASKS_PER_ACTOR` blocks at a time, and the driver holds only the rows of units
not yet complete.

Exactly once: see :mod:`ergo_ray.infer.manifest`. In short, one output part per input unit,
named by a hash of the unit, written atomically only when all of the unit's rows are back;
a re-run skips units whose part exists; ``OUT/_SUCCESS`` is written last. Killed workers and
actors are retried by Ray (Ray Data's pool actors restart with ``max_restarts=-1`` and retry
their tasks); a killed driver is resumed by running the same command again.

Bad input never stops the survey: a file that cannot be read, an image that fails
preprocessing and a galaxy the model rejects each become a row with ``status = "error"``,
an ``error`` naming the input and the reason, and NaN summaries. The final summary counts
them; the command exits 0 unless ``--fail-on-error``.

The catalogue is the Parquet dataset ``OUT/parts/`` (read it with
``pandas.read_parquet("OUT/parts")``, ``pyarrow.dataset.dataset("OUT/parts")`` or DuckDB's
``read_parquet('OUT/parts/*.parquet')``); ``--merge`` also writes a single
``OUT/catalog.parquet`` and ``--format fits`` a FITS binary table ``OUT/catalog.fits``.
"""

from __future__ import annotations

import io
import json
import logging
import os
import threading
import time
from collections import Counter
from collections.abc import Callable, Iterable, Mapping, Sequence
from concurrent.futures import Future, ThreadPoolExecutor, wait
from dataclasses import asdict, dataclass, field
from typing import TYPE_CHECKING, Any

import numpy as np
import pyarrow as pa
import pyarrow.compute as pc
import pyarrow.parquet as pq

from ergo_ray import __version__
from ergo_ray.errors import CheckpointError, ConfigError, InputError
from ergo_ray.infer.manifest import (
    CatalogLayout,
    CatalogStats,
    Manifest,
    WorkUnit,
    part_metadata,
)
from ergo_ray.infer.predictors import PosteriorPredictor
from ergo_ray.infer.progress import ProgressLog, summary_line
from ergo_ray.infer.readers import read_units
from ergo_ray.io import storage
from ergo_ray.io.schemas import META_CONFIG, META_KIND, META_MODEL_ID, posterior_schema

if TYPE_CHECKING:
    import ray.data

    from ergo_ray.config.schema import StorageConfig

log = logging.getLogger("ergo_ray")

#: CPUs reserved by one reader task. One whole CPU: raw input runs the preprocessing, and
#: a fraction would let Ray start several worker processes per core, which on a laptop
#: costs more (process start-up, imports) than it overlaps. It must also equal the remote
#: arguments of Ray Data's repartition operator (1 CPU) so that the block cutting is fused
#: into the reader task instead of running as one more operator.
READER_CPUS = 1.0
#: Blocks (of ``batch_size`` galaxies) an actor holds at once: one computing, one queued.
TASKS_PER_ACTOR = 2
#: ``prepare_image`` settings taken from the bundle for raw input (besides ``size``).
PREPARE_KEYS = ("crop_factor", "stretch", "central_box_px", "detect_nsigma", "min_area_px")
#: Part metadata that describes one unit, dropped from the merged file.
PART_ONLY_META = (b"ergo_ray.unit", b"ergo_ray.source", b"ergo_ray.rows", b"ergo_ray.errors")
#: Concurrent part writes on the driver.
WRITE_THREADS = 4


@dataclass(frozen=True)
class CatalogOptions:
    """Everything ``ergo-ray catalog`` needs, as plain values.

    Attributes
    ----------
    model, input, out : str
        Model bundle, input and output URLs.
    n_samples : int
        Posterior samples per galaxy.
    seed : int
        Seed of the posterior samples (combined with each ``object_id``).
    actors_min, actors_max : int
        Size range of the model actor pool.
    gpus_per_actor : float
        GPUs per actor (0: CPU).
    cpus_per_actor : float
        CPUs per actor (may be fractional); also the actor's torch threads on CPU.
    batch_size : int
        Galaxies per model call.
    keep_representation : bool
        Add the ``representation`` column.
    fits : bool
        Also export ``OUT/catalog.fits``.
    merge : bool
        Also write ``OUT/catalog.parquet``.
    mixed_precision : bool
        Autocast the encoder on CUDA.
    log_every_s : float
        Seconds between progress lines.
    readers : int or None
        Reader tasks running at once (each reads one unit); None: as many as the cluster's
        free CPUs allow. Bounds the rows being read, with Ray Data's per-operator
        object-store budget bounding the rows queued between readers and actors.
    wait_for_actors_s : int
        Seconds the pool waits for its ``actors_min`` actors before the first block goes
        out (so that they share the work from the start, not the first one to load its
        model); a cluster that cannot place them in that time fails the job, naming it.
    """

    model: str
    input: str
    out: str
    n_samples: int = 400
    seed: int = 0
    actors_min: int = 1
    actors_max: int = 1
    gpus_per_actor: float = 0.0
    cpus_per_actor: float = 1.0
    batch_size: int = 256
    keep_representation: bool = False
    fits: bool = False
    merge: bool = False
    mixed_precision: bool = True
    log_every_s: float = 30.0
    readers: int | None = None
    wait_for_actors_s: int = 600

    def check(self) -> None:
        """Validate the options (before any Ray work).

        Raises
        ------
        ConfigError
            Naming the option and the value.
        """
        if self.n_samples < 2:
            msg = f"--samples must be >= 2, got {self.n_samples}"
            raise ConfigError(msg)
        if not 1 <= self.actors_min <= self.actors_max:
            msg = f"--actors MIN:MAX needs 1 <= MIN <= MAX, got {self.actors_min}:{self.actors_max}"
            raise ConfigError(msg)
        if self.batch_size < 1 or int(self.batch_size) != self.batch_size:
            msg = f"--batch-size must be a positive integer, got {self.batch_size}"
            raise ConfigError(msg)
        if self.readers is not None and self.readers < 1:
            msg = f"--readers must be >= 1, got {self.readers}"
            raise ConfigError(msg)
        if self.gpus_per_actor < 0 or self.cpus_per_actor <= 0:
            msg = (f"--gpus-per-actor must be >= 0 and cpus per actor > 0, got "
                   f"{self.gpus_per_actor} and {self.cpus_per_actor}")
            raise ConfigError(msg)


@dataclass
class CatalogResult:
    """What a catalogue run produced."""

    out: str
    rows: int
    errors: int
    units: int
    skipped_units: int
    processed_rows: int
    seconds: float
    model_id: str
    first_error: str | None = None
    nodes: dict[str, int] = field(default_factory=dict)

    @property
    def summary(self) -> str:
        """The final one-line summary."""
        return summary_line(rows=self.rows, errors=self.errors, units=self.units,
                            skipped_units=self.skipped_units, seconds=self.seconds,
                            out=storage.redact(self.out))


# ---------------------------------------------------------------------- discovery
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


# ------------------------------------------------------------------- the dataset
def build_dataset(units: Sequence[WorkUnit], opts: CatalogOptions,
                  storage_cfg: StorageConfig | None, *, image_size: int,
                  preprocess: Mapping[str, Any]) -> ray.data.Dataset:
    """Return the lazy Ray dataset of model outputs for ``units``.

    Parameters
    ----------
    units : sequence of WorkUnit
        Units to process.
    opts : CatalogOptions
        Job options.
    storage_cfg : StorageConfig or None
        Storage settings.
    image_size : int
        The model's input side.
    preprocess : mapping
        ``prepare_image`` keyword arguments for raw input.

    Returns
    -------
    ray.data.Dataset
        Rows of :func:`ergo_ray.infer.predictors.output_schema`, in blocks of at most
        ``opts.batch_size`` rows, each block from one actor task.
    """
    import ray.data

    items = [{"unit": json.dumps(asdict(u), default=str)} for u in units]
    ds = ray.data.from_items(items, override_num_blocks=max(1, len(items)))
    ds.context.wait_for_min_actors_s = int(opts.wait_for_actors_s)
    ds = ds.map_batches(
        read_units, batch_size=1, batch_format="numpy",
        fn_kwargs={"storage_cfg": storage_cfg, "image_size": image_size,
                   "preprocess": dict(preprocess)},
        num_cpus=READER_CPUS,
        concurrency=opts.readers,
    )
    ds = ds.repartition(target_num_rows_per_block=int(opts.batch_size))
    actor_kw: dict[str, Any] = {"num_cpus": opts.cpus_per_actor}
    if opts.gpus_per_actor > 0:
        actor_kw["num_gpus"] = opts.gpus_per_actor
    return ds.map_batches(
        PosteriorPredictor,
        batch_size=int(opts.batch_size),
        batch_format="pyarrow",
        zero_copy_batch=True,
        compute=ray.data.ActorPoolStrategy(min_size=opts.actors_min, max_size=opts.actors_max,
                                           max_tasks_in_flight_per_actor=TASKS_PER_ACTOR),
        fn_constructor_kwargs={
            "model": opts.model, "storage_cfg": storage_cfg, "n_samples": opts.n_samples,
            "seed": opts.seed, "keep_representation": opts.keep_representation,
            "mixed_precision": opts.mixed_precision,
            "threads": max(1, int(opts.cpus_per_actor)),
            "actors_url": CatalogLayout(opts.out).actors_dir,
            # an actor without a GPU share stays on the CPU even where CUDA is visible;
            # with one, CUDA, or the CPU with a warning where torch sees no device
            "device": None if opts.gpus_per_actor > 0 else "cpu",
        },
        **actor_kw,
    )


# --------------------------------------------------------------------- collector
class UnitCollector:
    """Group model outputs by unit on the driver and write each unit's part when complete.

    The per-row work is vectorised (Arrow and numpy, no Python loop over rows), and the
    Parquet encoding and writing of parts run on a thread pool, so the driver keeps up
    with many actors (``collector_rate`` in ``bench/bench_catalog_scale.py`` measures its
    rows per second). Only the rows of incomplete units are held.

    Parameters
    ----------
    manifest : Manifest
        The job's manifest (writes the parts).
    schema : pyarrow.Schema
        The catalogue schema, with the job's key-value metadata.
    progress : ProgressLog
        Counters and progress lines.
    threads : int
        Concurrent part writes.
    on_write : callable, optional
        Called with the unit key and the rows received so far (this run) after its part
        is written (tests, hooks).
    """

    def __init__(self, manifest: Manifest, schema: pa.Schema, progress: ProgressLog,
                 threads: int = WRITE_THREADS,
                 on_write: Callable[[str, int], None] | None = None) -> None:
        self.manifest = manifest
        self.schema = schema
        self.progress = progress
        self.on_write = on_write
        self._buffers: dict[str, list[pa.Table]] = {}
        self._seen: dict[str, np.ndarray] = {}
        self._pool = ThreadPoolExecutor(max_workers=threads)
        self._futures: set[Future[None]] = set()
        self._lock = threading.Lock()
        self.nodes: Counter[str] = Counter()
        self.actors: Counter[str] = Counter()
        self.actor_nodes: dict[str, str] = {}
        self.first_error: str | None = None
        self.duplicate_rows = 0

    def add(self, batch: pa.Table) -> None:
        """Take one batch of model outputs (any units, any order, possibly repeated rows)."""
        if batch.num_rows == 0:
            return
        units = batch.column("_unit")
        keys = pc.unique(units).to_pylist()
        if len(keys) == 1:
            self._add_unit(keys[0], batch)
        else:
            for key in keys:
                self._add_unit(key, batch.filter(pc.equal(units, key)))
        self._reap(block=False)

    def _add_unit(self, key: str, part: pa.Table) -> None:
        seq = part.column("_seq").to_numpy()
        seen = self._seen.get(key)
        if seen is None:
            expected = int(part.column("_unit_rows")[0].as_py())
            seen = self._seen[key] = np.zeros(max(expected, 0), bool)
        valid = seq >= 0
        keep = np.zeros(len(seq), bool)
        if valid.any():
            idx = np.flatnonzero(valid)
            _, first = np.unique(seq[idx], return_index=True)
            idx = idx[first]
            idx = idx[~seen[seq[idx]]]
            keep[idx] = True
            seen[seq[idx]] = True
        self.duplicate_rows += int(valid.sum() - keep.sum())
        if keep.any():
            new = part if keep.all() else part.filter(pa.array(keep))
            self._buffers.setdefault(key, []).append(new)
            self._count(new)
        if seen.all():
            self._complete(key)

    def _count(self, new: pa.Table) -> None:
        status = new.column("status")
        n_err = int(pc.sum(pc.equal(status, "error")).as_py() or 0)
        if n_err and self.first_error is None:
            errs = new.filter(pc.equal(status, "error")).column("error")
            self.first_error = str(errs[0].as_py())
        self.progress.add_rows(new.num_rows, n_err)
        counts = pc.value_counts(pc.binary_join_element_wise(
            new.column("_actor"), new.column("_node"), "\x00"))
        for item in counts.to_pylist():
            actor, node = str(item["values"]).split("\x00", 1)
            self.nodes[node] += int(item["counts"])
            self.actors[actor] += int(item["counts"])
            self.actor_nodes[actor] = node

    def _complete(self, key: str) -> None:
        tables = self._buffers.pop(key, [])
        self._seen.pop(key, None)
        unit = self.manifest.by_key[key]
        fut = self._pool.submit(self._write, unit, tables, self.progress.rows)
        self._futures.add(fut)
        if len(self._futures) > 4 * WRITE_THREADS:
            self._reap(block=True)

    def _write(self, unit: WorkUnit, tables: list[pa.Table], rows_so_far: int) -> None:
        names = self.schema.names
        if tables:
            t = pa.concat_tables(tables)
            if not (np.diff(t.column("_seq").to_numpy()) > 0).all():
                t = t.sort_by("_seq")
            t = t.select(names)
        else:
            t = self.schema.empty_table()
        n_err = int(pc.sum(pc.equal(t.column("status"), "error")).as_py() or 0) if len(t) else 0
        meta = part_metadata(self.schema.metadata or {}, unit, t.num_rows, n_err)
        meta.update(string_lengths([t]))
        table = t.cast(self.schema).replace_schema_metadata(meta)
        self.manifest.write_part(unit, table)
        with self._lock:
            self.progress.unit_finished(table.num_rows)
        if self.on_write is not None:
            self.on_write(unit.key, rows_so_far)

    def _reap(self, block: bool) -> None:
        if not self._futures:
            return
        done, _ = wait(self._futures, timeout=None if block else 0,
                       return_when="FIRST_COMPLETED")
        for f in done:
            self._futures.discard(f)
            f.result()

    @property
    def incomplete(self) -> list[str]:
        """Keys of units with some but not all rows received."""
        return sorted(self._seen)

    def close(self) -> None:
        """Wait for every pending write; raise the first write error."""
        try:
            for f in list(self._futures):
                f.result()
            self._futures.clear()
        finally:
            self._pool.shutdown(wait=True)


# --------------------------------------------------------------------- the job
def _job_metadata(model_id: str, config_json: str) -> dict[bytes, bytes]:
    return {
        b"ergo_ray.version": __version__.encode(),
        META_MODEL_ID: model_id.encode(),
        META_CONFIG: config_json.encode(),
    }


def _bundle_info(model: str, storage_cfg: StorageConfig | None
                 ) -> tuple[str, int, dict[str, Any]]:
    """Return (model_id, input size, ``prepare_image`` keyword arguments) of a bundle.

    Reads only the bundle's manifest and ``transforms.json`` (digest-checked): the driver
    never builds the networks, the actors do.
    """
    from ergo_ray.shared.bundle_format import read_verified

    manifest, files = read_verified(model, storage_cfg, names=("transforms.json",))
    try:
        tr = json.loads(files["transforms.json"])
        model_id, size = str(manifest["model_id"]), int(tr["input_size"])
        pre = dict(tr.get("preprocess") or {})
    except (KeyError, TypeError, ValueError) as err:
        msg = f"{storage.redact(model)}: bundle metadata is invalid: {err!r}"
        raise CheckpointError(msg) from err
    return model_id, size, {k: pre[k] for k in PREPARE_KEYS if k in pre}


def _check_resources(opts: CatalogOptions) -> None:
    """Refuse a pool that a fixed-size (local) Ray instance cannot run beside one reader.

    The readers are CPU tasks of their own: model actors that take every CPU would leave
    none for them and the job would wait forever. An autoscaling cluster (``RAY_ADDRESS``)
    adds nodes for pending demands, so it is not checked.
    """
    import ray

    if os.environ.get("RAY_ADDRESS"):
        return
    res = ray.cluster_resources()
    if 0 < opts.gpus_per_actor > res.get("GPU", 0):
        msg = (f"--gpus-per-actor {opts.gpus_per_actor:g} but this Ray instance has no "
               "GPU; use --gpus-per-actor 0 on a CPU machine")
        raise ConfigError(msg)
    cpus = float(res.get("CPU", 0))
    need = opts.actors_min * opts.cpus_per_actor + READER_CPUS
    if need > cpus:
        msg = (f"--actors {opts.actors_min}:{opts.actors_max} with --cpus-per-actor "
               f"{opts.cpus_per_actor:g} and a {READER_CPUS:g}-CPU reader need {need:g} CPUs; "
               f"this Ray instance has {cpus:g} (cluster.local_num_cpus)")
        raise ConfigError(msg)


def run_catalog(opts: CatalogOptions, storage_cfg: StorageConfig | None = None,
                config_json: str = "{}", *,
                on_start: Callable[[], None] | None = None,
                start_ray: Callable[[], None] | None = None,
                on_write: Callable[[str, int], None] | None = None) -> CatalogResult:
    """Make (or finish) the posterior catalogue of ``opts.input`` under ``opts.out``.

    The model bundle, the input and the output folder are all checked before Ray is
    needed; Ray must be initialised by then (``start_ray`` is called first when given, e.g.
    :func:`ergo_ray.runtime.ensure_ray`), and is not needed at all when every unit is done.

    Parameters
    ----------
    opts : CatalogOptions
        Job options.
    storage_cfg : StorageConfig, optional
        Storage settings.
    config_json : str
        The resolved run configuration as JSON (Parquet metadata ``ergo_ray.config``).
    on_start : callable, optional
        Called once the output folder has been checked against this job (and before any
        work): the place to write provenance, which a refused re-run must not overwrite.
    start_ray : callable, optional
        Called once, just before the first Ray work.
    on_write : callable, optional
        Called with each unit key and the rows received so far after its part is written.

    Returns
    -------
    CatalogResult
        Counts over the whole finished catalogue and this run.
    """
    opts.check()
    t0 = time.monotonic()
    model_id, image_size, preprocess = _bundle_info(opts.model, storage_cfg)
    units, kind = discover_units(opts.input, storage_cfg)
    fingerprint = {
        "model_id": model_id,
        "n_samples": int(opts.n_samples),
        "seed": int(opts.seed),
        "keep_representation": bool(opts.keep_representation),
        "input": storage.redact(storage.locate(opts.input).url),
    }
    manifest = Manifest(opts.out, units, fingerprint, storage_cfg)
    resumed = manifest.open()
    if on_start is not None:
        on_start()
    pending = manifest.pending()
    skipped = len(units) - len(pending)
    if resumed:
        log.info("catalog: resuming %s: %d of %d units already done",
                 storage.redact(opts.out), skipped, len(units))
    schema = posterior_schema(opts.keep_representation).with_metadata(
        _job_metadata(model_id, config_json))
    progress = ProgressLog(total_units=len(pending), every_s=opts.log_every_s,
                           skipped_units=skipped)
    collector = UnitCollector(manifest, schema, progress, on_write=on_write)
    if pending:
        if start_ray is not None:
            start_ray()
        _check_resources(opts)
        log.info("catalog: %d units (%s input) -> %s; %d..%d actors, %g GPU/actor, "
                 "batch %d, %d samples", len(pending), kind, storage.redact(opts.out),
                 opts.actors_min, opts.actors_max, opts.gpus_per_actor,
                 opts.batch_size, opts.n_samples)
        ds = build_dataset(pending, opts, storage_cfg, image_size=image_size,
                           preprocess=preprocess)
        _drain(ds, collector, progress)
    progress.maybe_log(force=True)
    manifest.clean_temporary()
    stats = manifest.stats()
    if stats.duplicates:
        log.warning("catalog: %d rows share an object_id with another row; the input lists "
                    "those objects more than once", stats.duplicates)
    nodes = _write_actors(manifest, collector, storage_cfg)
    manifest.finish(stats, {"model_id": model_id, "ergo_ray_version": __version__})
    if opts.merge:
        merge_parts(manifest, storage_cfg)
    if opts.fits:
        export_fits(manifest, storage_cfg)
    result = CatalogResult(
        out=opts.out, rows=stats.rows, errors=stats.errors, units=stats.units,
        skipped_units=skipped, processed_rows=progress.rows,
        seconds=time.monotonic() - t0, model_id=model_id,
        first_error=collector.first_error or (_first_error(manifest, storage_cfg)
                                              if stats.errors else None),
        nodes=nodes,
    )
    log.info("%s", result.summary)
    return result


def _drain(ds: ray.data.Dataset, collector: UnitCollector, progress: ProgressLog) -> None:
    """Consume the dataset on the driver, logging progress from a side thread."""
    stop = threading.Event()

    def ticker() -> None:
        while not stop.wait(progress.every_s):
            progress.maybe_log(force=True)

    thread = threading.Thread(target=ticker, name="ergo-ray-progress", daemon=True)
    thread.start()
    try:
        for batch in ds.iter_batches(batch_size=None, batch_format="pyarrow",
                                     prefetch_batches=2):
            collector.add(batch)
    finally:
        stop.set()
        collector.close()
        thread.join(timeout=5)
    if collector.incomplete:
        msg = (f"{len(collector.incomplete)} units did not return all their rows "
               f"(first: {collector.manifest.by_key[collector.incomplete[0]].source}); "
               "re-run the same command to finish them")
        raise CheckpointError(msg)


def _write_actors(manifest: Manifest, collector: UnitCollector,
                  storage_cfg: StorageConfig | None) -> dict[str, int]:
    """Merge the actors' start records with this run's row counts into ``actors.json``."""
    lay = manifest.layout
    started: list[dict[str, Any]] = []
    # no folder: no actor has started (every unit was done before this run)
    for f in storage.list_files(lay.actors_dir, storage_cfg, (".json",), missing_ok=True):
        started.append(_json_record(f, storage_cfg))
    runs: list[dict[str, Any]] = []
    if storage.exists(lay.actors, storage_cfg):
        runs = list(_json_record(lay.actors, storage_cfg).get("runs", []))
    if collector.nodes:
        runs.append({
            "finished": time.time(),
            "nodes": dict(collector.nodes),
            "actors": [{"actor_id": a, "node_id": collector.actor_nodes.get(a), "rows": n}
                       for a, n in sorted(collector.actors.items())],
        })
    nodes: Counter[str] = Counter()
    for r in runs:
        nodes.update(r.get("nodes", {}))
    body = {"nodes": dict(nodes), "runs": runs, "started_actors": started}
    storage.write_bytes(lay.actors, json.dumps(body, indent=2).encode(), storage_cfg)
    return dict(nodes)


def _json_record(url: str, storage_cfg: StorageConfig | None) -> dict[str, Any]:
    """Read one JSON record of the job's bookkeeping; a corrupt one is a CheckpointError."""
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


def _first_error(manifest: Manifest, storage_cfg: StorageConfig | None) -> str | None:
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


__all__ = [
    "CatalogOptions",
    "CatalogResult",
    "CatalogStats",
    "UnitCollector",
    "build_dataset",
    "discover_units",
    "export_fits",
    "merge_parts",
    "run_catalog",
]
