"""Survey-scale posterior catalogue on Ray Data, exactly once and resumable.

The job (``ergo-ray catalog``)::

    units (driver: ergo_ray.infer.discovery, minus units already done)
      └─ read_units            CPU tasks (1 CPU each, their own operator): read a prepared
         │                     shard, or read raw FITS / raw shards and prepare every image
         │                     with ergo_ray.preprocess.prepare_image; each unit's rows are
         │                     cut into blocks of at most ``batch_size`` galaxies
         └─ PosteriorPredictor actor pool (ActorPoolStrategy, GPUs if asked): representation →
            │                  posterior samples → summaries → OOD score, in one pass; each
            │                  actor task is one block, so N actors share the galaxies
            │                  whatever the number of units
            └─ driver          groups rows by unit (ergo_ray.infer.collector); as soon as
                               a unit is complete, a write thread writes its part
                               OUT/parts/part-<unit key>.parquet in one atomic write

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
``OUT/catalog.parquet`` and ``--format fits`` a FITS binary table ``OUT/catalog.fits``
(:mod:`ergo_ray.infer.export`).
"""

from __future__ import annotations

import json
import logging
import os
import threading
import time
from collections import Counter
from collections.abc import Callable, Mapping, Sequence
from dataclasses import asdict, dataclass, field
from typing import TYPE_CHECKING, Any

from ergo_ray import __version__
from ergo_ray.errors import CheckpointError, ConfigError
from ergo_ray.infer.collector import UnitCollector
from ergo_ray.infer.discovery import discover_units
from ergo_ray.infer.export import export_fits, first_error, merge_parts, read_json_record
from ergo_ray.infer.manifest import CatalogLayout, CatalogStats, Manifest, WorkUnit
from ergo_ray.infer.predictors import PosteriorPredictor
from ergo_ray.infer.progress import ProgressLog, summary_line
from ergo_ray.infer.readers import read_units
from ergo_ray.io import storage
from ergo_ray.io.schemas import META_CONFIG, META_MODEL_ID, posterior_schema

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
    manifest = Manifest(opts.out, units, _fingerprint(opts, model_id), storage_cfg)
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
    stats, nodes = _finish(manifest, collector, opts, model_id, storage_cfg)
    result = CatalogResult(
        out=opts.out, rows=stats.rows, errors=stats.errors, units=stats.units,
        skipped_units=skipped, processed_rows=progress.rows,
        seconds=time.monotonic() - t0, model_id=model_id,
        first_error=collector.first_error or (first_error(manifest, storage_cfg)
                                              if stats.errors else None),
        nodes=nodes,
    )
    log.info("%s", result.summary)
    return result


def _fingerprint(opts: CatalogOptions, model_id: str) -> dict[str, Any]:
    """Return what a re-run must share with the run that wrote the output folder."""
    return {
        "model_id": model_id,
        "n_samples": int(opts.n_samples),
        "seed": int(opts.seed),
        "keep_representation": bool(opts.keep_representation),
        "input": storage.redact(storage.locate(opts.input).url),
    }


def _finish(manifest: Manifest, collector: UnitCollector, opts: CatalogOptions,
            model_id: str, storage_cfg: StorageConfig | None
            ) -> tuple[CatalogStats, dict[str, int]]:
    """Count the finished catalogue, record the actors, mark it done and export it."""
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
    return stats, nodes


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
        started.append(read_json_record(f, storage_cfg))
    runs: list[dict[str, Any]] = []
    if storage.exists(lay.actors, storage_cfg):
        runs = list(read_json_record(lay.actors, storage_cfg).get("runs", []))
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


__all__ = [
    "CatalogOptions",
    "CatalogResult",
    "CatalogStats",
    "build_dataset",
    "run_catalog",
]
