"""The catalogue driver's collector: rows grouped by unit, each part written when complete."""

from __future__ import annotations

import threading
from collections import Counter
from collections.abc import Callable
from concurrent.futures import Future, ThreadPoolExecutor, wait

import numpy as np
import pyarrow as pa
import pyarrow.compute as pc

from ergo_ray.infer.export import string_lengths
from ergo_ray.infer.manifest import Manifest, WorkUnit, part_metadata
from ergo_ray.infer.progress import ProgressLog

#: Concurrent part writes on the driver.
WRITE_THREADS = 4


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


__all__ = ["WRITE_THREADS", "UnitCollector"]
