"""Progress lines, ETA and the final summary line."""

from __future__ import annotations

import logging

from ergo_ray.infer.progress import ProgressLog, format_duration, summary_line


class Clock:
    def __init__(self):
        self.t = 100.0

    def __call__(self):
        return self.t


def test_format_duration():
    assert format_duration(0) == "0:00:00"
    assert format_duration(3725.4) == "1:02:05"
    assert format_duration(float("nan")) == "?"
    assert format_duration(float("inf")) == "?"


def test_progress_rates_eta_and_interval(caplog):
    clock = Clock()
    p = ProgressLog(total_units=4, every_s=10, skipped_units=1, clock=clock)
    assert p.eta() != p.eta()  # NaN before any unit finished
    clock.t += 5
    p.add_rows(50, errors=2)
    p.unit_finished(50)
    assert p.rate == 10.0
    # 4 units x 50 rows expected, 150 left at 10 rows/s
    assert p.eta() == 15.0
    with caplog.at_level(logging.INFO, logger="ergo_ray"):
        assert p.maybe_log() is False       # only 5 s since start
        clock.t += 6
        assert p.maybe_log() is True
        assert p.maybe_log() is False
        assert p.maybe_log(force=True) is True
    line = caplog.records[0].getMessage()
    assert line.startswith("catalog: 50 rows (2 errors) in 1/4 units, 1 done earlier")
    assert "rows/s" in line and "ETA 0:00:" in line


def test_summary_line():
    s = summary_line(rows=1234, errors=5, units=7, skipped_units=2, seconds=61, out="s3://b/c")
    assert s == ("catalog done: 1,234 rows (5 errors) from 7 units, 2 from an earlier run "
                 "in 0:01:01 -> s3://b/c")
