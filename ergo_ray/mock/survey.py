"""Render a mock survey as Ray tasks, each writing its own part straight to storage.

The survey is cut into parts of ``galaxies_per_task`` galaxies (all their projections). One
Ray task renders a part with :func:`~ergo_ray.mock.mock_object` and writes it: raw shards
(``shards/part-TTTTT-SSS.parquet``, at most ``rows_per_file`` rows each), HSC-SSP cutout
files (``cutouts/``) or TNG-layout files (``images/``), then its catalogue part
``catalog/part-TTTTT.parquet`` (and, for the ``hsc`` domain, ``truth/part-TTTTT.parquet``).
Tasks return only counts, and at most a window of them is in flight, so driver memory does
not grow with the survey size. The catalogue part is written last: a part whose catalogue
exists is complete, which is how a re-run of the same command resumes.

Every pixel depends only on ``(domain, seed, index, projection, stamp_px, mass_mode)``, so the
output is identical whatever the scheduling, the storage or the number of workers.
"""

from __future__ import annotations

import json
import logging
import math
import time
from collections.abc import Callable, Sequence
from dataclasses import asdict, dataclass
from typing import TYPE_CHECKING, Any

from ergo_ray.cosmology import nearest_tng_snapshot
from ergo_ray.errors import BadObjectError, ConfigError
from ergo_ray.io import storage as st
from ergo_ray.io.catalog import (
    CATALOG_DIR,
    TRUTH_DIR,
    part_name,
    rows_to_table,
    write_part,
)
from ergo_ray.io.cutout import Cutout
from ergo_ray.io.fits_hsc import hsc_cutout_name, write_hsc_cutout
from ergo_ray.io.fits_tng import tng_mock_name, write_tng_mock
from ergo_ray.io.schemas import TRUTH_COLUMNS
from ergo_ray.io.shards import write_raw_shard
from ergo_ray.types import DOMAINS

if TYPE_CHECKING:
    from ergo_ray.config.schema import StorageConfig

__all__ = ["MOCK_FORMATS", "MockSpec", "render_part", "render_survey"]

log = logging.getLogger("ergo_ray")

MOCK_FORMATS: tuple[str, ...] = ("shards", "hsc-fits", "tng-fits")
#: Data folders a mock run writes (cleared by ``overwrite``).
DATA_DIRS: tuple[str, ...] = (CATALOG_DIR, TRUTH_DIR, "shards", "cutouts", "images")
SPEC_FILE = "mock.json"

@dataclass(frozen=True)
class MockSpec:
    """What to render; identical specs give identical outputs.

    Attributes
    ----------
    domain : str
        One of :data:`~ergo_ray.types.DOMAINS`.
    n : int
        Galaxies.
    projections : int
        Projections per galaxy (1–4).
    seed : int
        Survey seed.
    fmt : str
        ``shards``, ``hsc-fits`` or ``tng-fits``.
    stamp_px : int
        Stamp side in pixels.
    mass_mode : str
        ``balanced`` or ``population``.
    rows_per_file : int
        Rows per raw shard file.
    galaxies_per_task : int
        Galaxies rendered and written by one Ray task.
    """

    domain: str
    n: int
    projections: int
    seed: int
    fmt: str
    stamp_px: int
    mass_mode: str = "balanced"
    rows_per_file: int = 256
    galaxies_per_task: int = 64

    def check(self) -> None:
        """Raise :class:`ConfigError` for an impossible spec (before any Ray work)."""
        problems = []
        if self.domain not in DOMAINS:
            problems.append(
                f"--domain {self.domain!r} is not one of {', '.join(DOMAINS)}"
            )
        if self.fmt not in MOCK_FORMATS:
            problems.append(
                f"--format {self.fmt!r} is not one of {', '.join(MOCK_FORMATS)}"
            )
        if self.n < 1:
            problems.append(f"--n must be at least 1, got {self.n}")
        if not 1 <= self.projections <= 4:
            problems.append(f"--projections must be 1..4, got {self.projections}")
        if not 16 <= self.stamp_px <= 512:
            problems.append(f"--stamp-px must be 16..512, got {self.stamp_px}")
        if self.mass_mode not in ("balanced", "population"):
            problems.append(
                f"mass mode {self.mass_mode!r} is not balanced or population"
            )
        if self.rows_per_file < 1 or self.galaxies_per_task < 1:
            problems.append(
                "mock.rows_per_file and mock.galaxies_per_task must be >= 1"
            )
        if problems:
            raise ConfigError("; ".join(problems))

    @property
    def n_tasks(self) -> int:
        """Number of parts (Ray tasks)."""
        return math.ceil(self.n / self.galaxies_per_task)


def pseudo_tract(ra: float | None, dec: float | None) -> int:
    """Return a tract-like number from a sky position (1.7° cells, as HSC tracts).

    Parameters
    ----------
    ra, dec : float or None
        Position in degrees.

    Returns
    -------
    int
        A stable integer 0–19999 used in HSC-style file names.
    """
    if ra is None or dec is None or not (math.isfinite(ra) and math.isfinite(dec)):
        return 0
    ring = int((dec + 90.0) // 1.7)
    return (ring * 212 + int((ra % 360.0) // 1.7)) % 20000


def _lineno(spec: MockSpec, index: int, projection: int) -> int:
    # the line of the object in the "uploaded list": header is line 1 (formats research §1.2)
    return 2 + index * spec.projections + projection


def render_part(
    spec: MockSpec,
    task: int,
    out: str,
    storage: StorageConfig | None = None,
    renderer: Callable[..., tuple[dict[str, Any], Cutout]] | None = None,
) -> dict[str, Any]:
    """Render and write one part of the survey (the body of one Ray task).

    Parameters
    ----------
    spec : MockSpec
        The survey.
    task : int
        Part number; galaxies ``task * galaxies_per_task`` up to the next part.
    out : str
        Output folder URL.
    storage : StorageConfig, optional
        Storage settings.
    renderer : callable, optional
        ``mock_object``-compatible function (default :func:`ergo_ray.mock.mock_object`).

    Returns
    -------
    dict
        ``task``, ``objects``, ``errors``, ``files``, ``seconds`` and the first error
        reasons (``reasons``, at most 5).
    """
    if renderer is None:
        from ergo_ray.mock import mock_object as renderer
    t0 = time.perf_counter()
    start = task * spec.galaxies_per_task
    stop = min(spec.n, start + spec.galaxies_per_task)
    hide_truth = spec.domain == "hsc"
    rows: list[dict[str, Any]] = []
    shards = _ShardWriter(task, out, storage, TRUTH_COLUMNS if hide_truth else (),
                          spec.rows_per_file)
    files = errors = 0
    reasons: list[str] = []
    for index in range(start, stop):
        for projection in range(spec.projections):
            try:
                row, cut = renderer(
                    spec.domain,
                    spec.seed,
                    index,
                    projection,
                    spec.stamp_px,
                    spec.mass_mode,
                )
            except BadObjectError as err:
                errors += 1
                if len(reasons) < 5:
                    reasons.append(str(err))
                continue
            row = dict(row)
            if spec.fmt == "shards":
                shards.add(row, cut)
            elif spec.fmt == "hsc-fits":
                files += _write_hsc_fits(spec, cut, row, index, projection, out, storage)
            else:
                files += _write_tng_fits(cut, row, index, projection, out, storage)
            rows.append(row)
    shards.flush()
    _write_tables(task, rows, out, storage, hide_truth)
    return {
        "task": task,
        "objects": len(rows),
        "errors": errors,
        "files": files + shards.files,
        "seconds": time.perf_counter() - t0,
        "reasons": reasons,
    }


class _ShardWriter:
    """The raw shards of one part: ``rows_per_file`` objects a file, ``shards/part-…``."""

    def __init__(self, task: int, out: str, storage: StorageConfig | None,
                 drop: Sequence[str], rows_per_file: int) -> None:
        self.task, self.out, self.storage = task, out, storage
        self.drop, self.rows_per_file = drop, rows_per_file
        self.pending: list[tuple[dict[str, Any], Cutout]] = []
        self.files = 0

    def add(self, row: dict[str, Any], cut: Cutout) -> None:
        """Queue one object; write a shard when ``rows_per_file`` are queued."""
        self.pending.append((row, cut))
        if len(self.pending) >= self.rows_per_file:
            self.flush()

    def flush(self) -> None:
        """Write the queued objects as the next shard (their rows get its ``file``)."""
        if not self.pending:
            return
        rel = f"shards/{part_name(self.task, self.files)}"
        for row, _ in self.pending:
            row["file"] = rel
        write_raw_shard(
            st.join(self.out, rel),
            [r for r, _ in self.pending],
            [c for _, c in self.pending],
            self.storage,
            drop=self.drop,
        )
        self.files += 1
        self.pending.clear()


def _write_tables(task: int, rows: list[dict[str, Any]], out: str,
                  storage: StorageConfig | None, hide_truth: bool) -> None:
    """Write the part's truth table (``hsc`` only) and then its catalogue part."""
    if hide_truth:
        truth = rows_to_table(
            [{k: r.get(k) for k in ("object_id", *TRUTH_COLUMNS)} for r in rows]
        )
        write_part(
            st.join(out, TRUTH_DIR, part_name(task)), truth, storage, kind="truth"
        )
    # the catalogue part last: its presence marks the part complete (resume)
    table = rows_to_table(rows, drop=TRUTH_COLUMNS if hide_truth else ())
    write_part(
        st.join(out, CATALOG_DIR, part_name(task)), table, storage, kind="catalog"
    )

def _write_hsc_fits(spec: MockSpec, cut: Cutout, row: dict[str, Any], index: int,
                    projection: int, out: str, storage: StorageConfig | None) -> int:
    """Write one object as HSC service cutouts (g, r, i files); complete its row."""
    lineno = _lineno(spec, index, projection)
    tract = int(row.get("tract") or pseudo_tract(row.get("ra"), row.get("dec")))
    write_hsc_cutout(
        cut,
        st.join(out, "cutouts"),
        lineno=lineno,
        tract=tract,
        storage_cfg=storage,
        ra=row.get("ra"),
        dec=row.get("dec"),
    )
    row.update(
        cutout_lineno=lineno,
        tract=tract,
        file=f"cutouts/{hsc_cutout_name(lineno, 'i', tract)}",
    )
    return 3


def _write_tng_fits(cut: Cutout, row: dict[str, Any], index: int, projection: int, out: str,
                    storage: StorageConfig | None) -> int:
    """Write one object as a TNG-style mock file; complete its row."""
    snap = int(row.get("snap") or nearest_tng_snapshot(float(row["redshift"])))
    subhalo = int(row.get("subhalo", index))
    name = tng_mock_name(snap, subhalo, projection)
    write_tng_mock(
        cut,
        st.join(out, "images", name),
        redshift=row["redshift"],
        storage_cfg=storage,
        ra=row.get("ra"),
        dec=row.get("dec"),
    )
    row.update(snap=snap, subhalo=subhalo, file=f"images/{name}")
    return 1


def _render_task(
    spec_dict: dict[str, Any], task: int, out: str, storage: StorageConfig | None
) -> dict[str, Any]:
    from ergo_ray.runtime import set_env_defaults

    set_env_defaults()
    return render_part(MockSpec(**spec_dict), task, out, storage)


def _prepare_output(
    spec: MockSpec, out: str, storage: StorageConfig | None, overwrite: bool
) -> set[int]:
    """Check or write ``_meta/mock.json``; return the parts already complete."""
    spec_url = st.join(out, "_meta", SPEC_FILE)
    wanted = asdict(spec)
    if overwrite:
        for sub in DATA_DIRS:
            st.remove(st.join(out, sub), storage, recursive=True)
    elif st.exists(spec_url, storage):
        old = json.loads(st.read_bytes(spec_url, storage))
        diff = {k: (old.get(k), v) for k, v in wanted.items() if old.get(k) != v}
        if diff:
            desc = ", ".join(
                f"{k}: {a!r} -> {b!r}" for k, (a, b) in sorted(diff.items())
            )
            msg = (
                f"{st.redact(out)} already holds a different mock ({desc}); "
                f"choose another --out or pass --overwrite"
            )
            raise ConfigError(msg)
    elif st.exists(st.join(out, CATALOG_DIR), storage):
        msg = (
            f"{st.redact(out)} already holds a catalogue not written by this mock run; "
            f"choose another --out or pass --overwrite"
        )
        raise ConfigError(msg)
    st.write_bytes(
        spec_url, json.dumps(wanted, indent=2, sort_keys=True).encode(), storage
    )
    done: set[int] = set()
    cat = st.join(out, CATALOG_DIR)
    if not overwrite and st.exists(cat, storage):
        for url in st.list_files(cat, storage, (".parquet",)):
            name = url.rsplit("/", 1)[-1]
            if name.startswith("part-") and name[5:10].isdigit():
                done.add(int(name[5:10]))
    return {t for t in done if t < spec.n_tasks}


def render_survey(
    spec: MockSpec,
    out: str,
    storage: StorageConfig | None = None,
    *,
    max_in_flight: int | None = None,
    overwrite: bool = False,
    log_every_s: float = 10.0,
) -> dict[str, Any]:
    """Render a mock survey with Ray tasks (Ray must already be initialised).

    Parameters
    ----------
    spec : MockSpec
        The survey.
    out : str
        Output folder URL.
    storage : StorageConfig, optional
        Storage settings (pickled to the tasks; credentials are never logged).
    max_in_flight : int, optional
        Tasks submitted at once (default: twice the cluster's CPUs).
    overwrite : bool
        Delete the data folders of a previous run first. Otherwise a previous run of the same
        spec is resumed (complete parts are skipped) and a different one is refused.
    log_every_s : float
        Seconds between progress lines.

    Returns
    -------
    dict
        ``objects``, ``galaxies``, ``errors``, ``files``, ``parts``, ``parts_skipped``,
        ``seconds``, ``objects_per_s``, ``reasons``.

    Raises
    ------
    ConfigError
        For an invalid spec or an output folder holding another mock.
    """
    import ray

    spec.check()
    t0 = time.perf_counter()
    done = _prepare_output(spec, out, storage, overwrite)
    todo = [t for t in range(spec.n_tasks) if t not in done]
    if done:
        log.info(
            "mock: resuming %s: %d of %d parts already written",
            st.redact(out),
            len(done),
            spec.n_tasks,
        )
    cpus = int(ray.cluster_resources().get("CPU", 1)) or 1
    window = max(1, max_in_flight or 2 * cpus)
    totals, reasons = _run_parts(spec, todo, out, storage, window, t0, log_every_s)
    seconds = time.perf_counter() - t0
    return {
        **totals,
        "galaxies": spec.n,
        "parts": spec.n_tasks,
        "parts_skipped": len(done),
        "seconds": seconds,
        "objects_per_s": totals["objects"] / max(seconds, 1e-9),
        "reasons": reasons,
    }


def _run_parts(
    spec: MockSpec,
    todo: list[int],
    out: str,
    storage: StorageConfig | None,
    window: int,
    t0: float,
    log_every_s: float,
) -> tuple[dict[str, int], list[str]]:
    """Render the parts ``todo`` as Ray tasks, ``window`` at a time; sum their counts.

    Returns
    -------
    totals : dict
        ``objects``, ``errors``, ``files``.
    reasons : list of str
        The first error reasons (at most 5).
    """
    import ray

    remote = ray.remote(_render_task).options(num_cpus=1, max_retries=2)
    spec_dict = asdict(spec)
    storage_ref = ray.put(storage)
    in_flight: list[Any] = []
    totals = {"objects": 0, "errors": 0, "files": 0}
    reasons: list[str] = []
    finished, last_log = 0, time.perf_counter()
    queue = list(todo)
    log.info(
        "mock: rendering %d galaxies x %d projections of %s as %s into %s (%d parts, "
        "%d in flight)",
        spec.n,
        spec.projections,
        spec.domain,
        spec.fmt,
        st.redact(out),
        len(todo),
        window,
    )
    while queue or in_flight:
        while queue and len(in_flight) < window:
            in_flight.append(remote.remote(spec_dict, queue.pop(0), out, storage_ref))
        ready, in_flight = ray.wait(in_flight, num_returns=1)
        res = ray.get(ready[0])
        finished += 1
        for key in totals:
            totals[key] += int(res[key])
        reasons.extend(res["reasons"][: max(0, 5 - len(reasons))])
        now = time.perf_counter()
        if now - last_log >= log_every_s or finished == len(todo):
            last_log = now
            log.info(
                "mock: %d/%d parts, %d objects, %.1f objects/s",
                finished,
                len(todo),
                totals["objects"],
                totals["objects"] / max(now - t0, 1e-9),
            )
    return totals, reasons
