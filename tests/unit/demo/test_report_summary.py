"""The demo's headline figures: coverage at exactly 68 % and 90 %, hsc's true shift."""

from __future__ import annotations

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
    with pytest.raises(KeyError, match=r"0.68"):
        _coverage_at(old, 0.68)


def test_a_renamed_or_missing_figure_fails_naming_file_and_key(tmp_path):
    from ergo_ray.demo.report import summarize
    from ergo_ray.errors import InputError

    cfg = load_config("ci", [], [])
    with pytest.raises(InputError, match=r"validate/tng/summary.json: missing"):
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


def _write_demo(out, tng_rows, hsc_mass, hsc_fx):
    write_part(storage.join(out, "mock", "tng100", "catalog", "part-00000.parquet"),
               rows_to_table(tng_rows))
    os.makedirs(storage.join(out, "validate", "hsc"))
    pq.write_table(pa.table({"log_mstar": hsc_mass, "true_exsitu_frac": hsc_fx}),
                   storage.join(out, "validate", "hsc", "predictions.parquet"))


def test_hidden_truth_shift_known_answer(tmp_path):
    # Two mass bins of the ci preset, [10, 10.5) and [11, 11.5); tng100 truth 0.30 and 0.50,
    # hsc truth 0.25 (20 galaxies) and 0.40 (60 galaxies), and 3 hsc galaxies in [9, 9.5)
    # where tng100 has none (skipped: fewer than 5 on one side). Weighted by hsc's counts:
    # (20 × −0.05 + 60 × −0.10) / 80 = −0.0875; tng100's own mass mix does not enter.
    cfg = load_config("ci")
    assert {10.0, 10.5, 11.0, 11.5} <= set(cfg.evaluate.mass_bins)
    base = draw_galaxy("tng100", 3, 0).row(0)
    tng = ([{**base, "object_id": f"a{i}", "log_mstar": 10.2, "true_exsitu_frac": 0.30}
            for i in range(50)]
           + [{**base, "object_id": f"b{i}", "log_mstar": 11.2, "true_exsitu_frac": 0.50}
              for i in range(7)])
    hsc_mass = [10.1] * 20 + [11.3] * 60 + [9.2] * 3
    hsc_fx = [0.25] * 20 + [0.40] * 60 + [0.9] * 3
    _write_demo(str(tmp_path), tng, hsc_mass, hsc_fx)
    assert _hidden_truth_shift(str(tmp_path), cfg) == pytest.approx(-0.0875, abs=1e-12)
    assert math.isnan(_hidden_truth_shift(str(tmp_path / "no-demo"), cfg))


def test_hidden_truth_shift_of_the_mock_is_hsc_lower_at_fixed_mass(tmp_path):
    cfg = load_config("ci")
    rows = {d: [draw_galaxy(d, 3, i).row(0) for i in range(600)] for d in ("tng100", "hsc")}
    _write_demo(str(tmp_path), rows["tng100"], [r["log_mstar"] for r in rows["hsc"]],
                [r["true_exsitu_frac"] for r in rows["hsc"]])
    assert _hidden_truth_shift(str(tmp_path), cfg) < -0.02  # hsc: −0.5 in logit at fixed mass
