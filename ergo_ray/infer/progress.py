"""Plain-text progress lines and the one-line summary of a catalogue job.

Interactive runs also get Ray Data's progress bars (enabled when stderr is a terminal, see
:func:`ergo_ray.runtime.set_env_defaults`); batch jobs and CI logs get these periodic lines
instead, which read well in ``ray job logs``::

    catalog: 12,288 rows (3 errors) in 24/96 units, 512.0 rows/s, ETA 0:01:12

The rates and the ETA count only the rows processed by *this* run, so a resumed run does
not report the rows it skipped as instantly processed.
"""

from __future__ import annotations

import logging
import time
from collections.abc import Callable
from dataclasses import dataclass, field

log = logging.getLogger("ergo_ray")


def format_duration(seconds: float) -> str:
    """Format a duration as ``H:MM:SS`` (``?`` when unknown).

    Parameters
    ----------
    seconds : float
        Duration in seconds; NaN or negative means unknown.

    Returns
    -------
    str
        The formatted duration.
    """
    if not seconds >= 0 or seconds == float("inf"):
        return "?"
    s = round(seconds)
    return f"{s // 3600}:{(s % 3600) // 60:02d}:{s % 60:02d}"


@dataclass
class ProgressLog:
    """Count rows, errors and finished units; log a line at most every ``every_s`` seconds.

    Parameters
    ----------
    total_units : int
        Units this run has to process (units already done by an earlier run excluded).
    every_s : float
        Minimum seconds between two progress lines (``cfg.infer.log_every_s``).
    skipped_units : int
        Units already finished by an earlier run (reported, not counted in rates).
    label : str
        Prefix of every line.
    clock : callable
        Monotonic clock (injectable for tests).
    """

    total_units: int
    every_s: float = 30.0
    skipped_units: int = 0
    label: str = "catalog"
    clock: Callable[[], float] = time.monotonic
    rows: int = 0
    errors: int = 0
    units_done: int = 0
    unit_rows: int = 0
    _start: float = field(default=float("nan"), init=False)
    _last: float = field(default=float("nan"), init=False)

    def __post_init__(self) -> None:
        self._start = self.clock()
        self._last = self._start

    def add_rows(self, rows: int, errors: int = 0) -> None:
        """Count rows that came out of the model stage (finished unit or not)."""
        self.rows += int(rows)
        self.errors += int(errors)

    def unit_finished(self, rows: int) -> None:
        """Count one unit whose part was written, holding ``rows`` rows."""
        self.units_done += 1
        self.unit_rows += int(rows)

    @property
    def elapsed(self) -> float:
        """Seconds since this run started."""
        return self.clock() - self._start

    @property
    def rate(self) -> float:
        """Rows per second so far (NaN before any time has passed)."""
        dt = self.elapsed
        return self.rows / dt if dt > 0 else float("nan")

    def eta(self) -> float:
        """Seconds left, from the mean rows per finished unit and the current rate.

        Returns
        -------
        float
            Estimated seconds to finish; NaN until one unit has finished.
        """
        if self.units_done == 0 or not self.rate > 0:
            return float("nan")
        expected_rows = self.unit_rows / self.units_done * self.total_units
        return max(expected_rows - self.rows, 0.0) / self.rate

    def line(self) -> str:
        """Return the current progress line."""
        skipped = f", {self.skipped_units} done earlier" if self.skipped_units else ""
        return (
            f"{self.label}: {self.rows:,} rows ({self.errors:,} errors) in "
            f"{self.units_done}/{self.total_units} units{skipped}, {self.rate:.1f} rows/s, "
            f"ETA {format_duration(self.eta())}"
        )

    def maybe_log(self, force: bool = False) -> bool:
        """Log the progress line if ``every_s`` has passed since the last one.

        Parameters
        ----------
        force : bool
            Log now regardless of the interval.

        Returns
        -------
        bool
            Whether a line was logged.
        """
        now = self.clock()
        if not force and now - self._last < self.every_s:
            return False
        self._last = now
        log.info("%s", self.line())
        return True


def summary_line(
    *, rows: int, errors: int, units: int, skipped_units: int, seconds: float, out: str
) -> str:
    """Return the final one-line summary of a catalogue job.

    Parameters
    ----------
    rows : int
        Rows in the finished catalogue (all runs).
    errors : int
        Rows with ``status == "error"`` in the finished catalogue.
    units : int
        Input units in the catalogue.
    skipped_units : int
        Units that an earlier run had already finished.
    seconds : float
        Wall time of this run.
    out : str
        Output URL (credentials redacted by the caller).

    Returns
    -------
    str
        ``catalog done: N rows (E errors) from U units (S resumed) in T -> OUT``.
    """
    resumed = f", {skipped_units} from an earlier run" if skipped_units else ""
    return (
        f"catalog done: {rows:,} rows ({errors:,} errors) from {units} units{resumed} "
        f"in {format_duration(seconds)} -> {out}"
    )
