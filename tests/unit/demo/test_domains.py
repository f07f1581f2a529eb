"""The demo's per-domain table: coverage, PIT KS and bias per validated domain, and the hsc
shift as a recovered fraction beside the struct_* oracle's (issue 17)."""

from __future__ import annotations

import json
import math
import os

import numpy as np
import pyarrow as pa
import pyarrow.parquet as pq

from ergo_ray.config.loader import load_config
from ergo_ray.demo.domains import domain_figures, domain_rows, oracle_figures
from ergo_ray.evaluate.calibration import COVERAGE_LEVELS
from ergo_ray.io.catalog import rows_to_table, write_part
from ergo_ray.mock import draw_galaxy
from ergo_ray.types import TARGETS


def _metrics(c68: float, c90: float, ks: float, bias: float) -> dict:
    cov = [0.5] * len(COVERAGE_LEVELS)
    cov[COVERAGE_LEVELS.index(0.68)], cov[COVERAGE_LEVELS.index(0.9)] = c68, c90
    cal = {"coverage": {"levels": list(COVERAGE_LEVELS), "coverage": cov, "n": 10},
           "pit": {"ks": ks, "mean": 0.4}}
    return {"model": {"targets": {t: {"bias": bias, "frac_within_0.1": 0.75} for t in TARGETS},
                      "calibration": {t: cal for t in TARGETS}}}


def test_every_validated_domain_gets_its_row_of_figures(tmp_path):
    cfg = load_config("ci")
    for name, fig in (("tng", (0.7, 0.91, 0.04, -0.01)), ("hsc", (0.594, 0.826, 0.214, 0.02))):
        os.makedirs(tmp_path / "validate" / name)
        (tmp_path / "validate" / name / "metrics.json").write_text(json.dumps(_metrics(*fig)))
    s = domain_figures(str(tmp_path), cfg)
    assert s["domain_hsc_exsitu_frac_c68"] == 0.594 and s["domain_hsc_exsitu_frac_c90"] == 0.826
    assert s["domain_hsc_exsitu_frac_pit_ks"] == 0.214
    assert s["domain_tng_lmm_log_mass_bias"] == -0.01
    assert not any(k.startswith("domain_eagle") for k in s)  # not validated: no row
    s |= {"hsc_minus_tng100_exsitu_inferred": -0.009,
          "hsc_minus_tng100_exsitu_hidden_truth": -0.053,
          "oracle_hsc_minus_tng100": -0.034, "oracle_hsc_exsitu_bias": 0.012,
          "model_hsc_exsitu_bias_same": 0.02}
    rows = {r[0]: r for r in domain_rows(s)}
    assert rows["hsc (hidden truth): ex-situ coverage 68 % / 90 %"][1] == "59.4 % / 82.6 %"
    assert rows["hsc (hidden truth): ex-situ PIT KS / bias / within ±0.1"][1] == (
        "0.214 / +0.020 / 75.0 %")
    shift = rows["hsc − tng100 ex-situ at fixed mass: recovered fraction of the true shift"]
    assert shift[1] == "17.0 % (-0.009)" and shift[2].startswith("64.2 % (-0.034)")
    assert rows["hsc ex-situ bias (MAP − hidden truth), same galaxies"][1:3] == ("+0.020", "+0.012")


def test_the_oracle_sees_part_of_the_hsc_shift(tmp_path):
    cfg = load_config("ci")
    out = str(tmp_path)
    rows = {d: [draw_galaxy(d, 3, i).row(0) for i in range(1500)] for d in ("tng100", "hsc")}
    write_part(f"{out}/mock/tng100/catalog/part-00000.parquet", rows_to_table(rows["tng100"]))
    hidden = ("true_exsitu_frac", "true_lmm_lookback_gyr", "true_lmm_log_mass")
    write_part(f"{out}/mock/hsc/catalog/part-00000.parquet",
               rows_to_table([{k: v for k, v in r.items() if k not in hidden}
                              for r in rows["hsc"]]))
    truth = np.array([r["true_exsitu_frac"] for r in rows["hsc"]])
    os.makedirs(tmp_path / "validate" / "hsc")
    pq.write_table(pa.table({"object_id": [r["object_id"] for r in rows["hsc"]],
                             "true_exsitu_frac": truth, "exsitu_frac_map": truth + 0.05,
                             "log_mstar": [r["log_mstar"] for r in rows["hsc"]]}),
                   tmp_path / "validate" / "hsc" / "predictions.parquet")
    o = oracle_figures(out, cfg)
    assert math.isclose(o["model_hsc_exsitu_bias_same"], 0.05, abs_tol=1e-9)
    # an ideal measurement trained on tng100 sees hsc lower (the truth: -0.5 in logit), but
    # is pulled towards tng100's relation: a fraction of the shift and a positive bias
    assert o["oracle_hsc_minus_tng100"] < -0.01
    assert 0 < o["oracle_hsc_exsitu_bias"] < 0.05
