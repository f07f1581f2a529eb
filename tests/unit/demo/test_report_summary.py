"""The demo's headline figures: coverage at exactly 68 % and 90 %, hsc's true shift."""

from __future__ import annotations

import itertools
import math
import os

import numpy as np
import pyarrow as pa
import pyarrow.parquet as pq
import pytest

from ergo_ray.config.loader import load_config
from ergo_ray.demo.report import _coverage_at, _hidden_truth_shift, _num
from ergo_ray.evaluate.calibration import COVERAGE_LEVELS
from ergo_ray.io import storage
from ergo_ray.io.catalog import rows_to_table, write_part
from ergo_ray.mock import draw_galaxy


def test_headline_levels_are_on_the_validation_curve():
    assert len(COVERAGE_LEVELS) == 10 and {0.68, 0.9} <= set(COVERAGE_LEVELS)
    curve = {"levels": list(COVERAGE_LEVELS), "coverage": [v / 100 for v in range(10)]}
    assert _coverage_at(curve, 0.68) == curve["coverage"][COVERAGE_LEVELS.index(0.68)]
    assert _coverage_at(curve, 0.9) == curve["coverage"][COVERAGE_LEVELS.index(0.9)]


def test_a_curve_without_the_level_is_an_error_not_a_neighbour():
    old = {"levels": [0.05, 0.15, 0.25, 0.35, 0.45, 0.55, 0.65, 0.75, 0.85, 0.95],
           "coverage": [0.1] * 10}
    with pytest.raises(KeyError, match="0.68"):
        _coverage_at(old, 0.68)


def test_a_renamed_or_missing_figure_fails_naming_file_and_key(tmp_path):
    from ergo_ray.demo.report import summarize
    from ergo_ray.errors import InputError

    cfg = load_config("ci", [], [])
    with pytest.raises(InputError, match="validate/tng/summary.json: missing"):
        summarize(str(tmp_path), cfg)
    for name in ("tng", "hsc", "eagle"):
        (tmp_path / "validate" / name).mkdir(parents=True)
        (tmp_path / "validate" / name / "summary.json").write_text(
            '{"exsitu_frac_within_0_1": {"model": 0.8, "baseline": 0.7}}')
    (tmp_path / "validate" / "tng" / "metrics.json").write_text("{}")
    (tmp_path / "compare").mkdir()
    (tmp_path / "compare" / "summary.json").write_text("{}")
    with pytest.raises(InputError, match=r"tng/summary.json: no 'exsitu_frac_within_0.1'"):
        summarize(str(tmp_path), cfg)
    with pytest.raises(TypeError, match="expected a number"):
        _num("0.8")
    assert math.isnan(_num(None)) and _num(np.float32(0.5)) == 0.5


def test_hidden_truth_shift_is_hsc_truth_minus_tng100_truth_per_mass_bin(tmp_path):
    cfg = load_config("ci")
    out = str(tmp_path)
    rows = {d: [draw_galaxy(d, 3, i).row(0) for i in range(600)] for d in ("tng100", "hsc")}
    write_part(storage.join(out, "mock", "tng100", "catalog", "part-00000.parquet"),
               rows_to_table(rows["tng100"]))
    hsc = pa.table({c: [r[c] for r in rows["hsc"]] for c in ("log_mstar", "true_exsitu_frac")})
    os.makedirs(storage.join(out, "validate", "hsc"))
    pq.write_table(hsc, storage.join(out, "validate", "hsc", "predictions.parquet"))

    diffs, weights = [], []
    for lo, hi in itertools.pairwise(cfg.evaluate.mass_bins):
        h = [r["true_exsitu_frac"] for r in rows["hsc"] if lo <= r["log_mstar"] < hi]
        t = [r["true_exsitu_frac"] for r in rows["tng100"] if lo <= r["log_mstar"] < hi]
        if len(h) >= 5 and len(t) >= 5:
            diffs.append(np.mean(h) - np.mean(t))
            weights.append(len(h))
    expected = float(np.average(diffs, weights=weights))

    got = _hidden_truth_shift(out, cfg)
    assert got == pytest.approx(expected, abs=1e-12)
    assert got < -0.02  # hsc's documented −0.5 in logit at fixed mass
    assert math.isnan(_hidden_truth_shift(str(tmp_path / "no-demo"), cfg))
