from __future__ import annotations

import numpy as np
import pytest

from ergo_ray.evaluate.metrics import (
    evaluate_predictions,
    mask_invalid_samples,
    mass_bin_metrics,
    nmm_classification,
    point_metrics,
    target_metrics,
    truth_from_columns,
)


def test_point_metrics_known_values():
    m = point_metrics(np.array([1.0, 2.0, 4.0, np.nan]), np.array([0.0, 2.0, 2.0, 1.0]))
    assert m["n"] == 3
    assert m["mae"] == pytest.approx(1.0)
    assert m["bias"] == pytest.approx(1.0)
    assert m["rmse"] == pytest.approx(np.sqrt(5 / 3))
    assert m["median_error"] == pytest.approx(1.0)


def test_point_metrics_empty_is_nan():
    m = point_metrics(np.array([np.nan]), np.array([1.0]))
    assert m["n"] == 0 and np.isnan(m["mae"])


def test_truth_from_columns_sentinels_become_nan_in_both():
    t = truth_from_columns({
        "true_exsitu_frac": [0.2, 0.5, 0.3],
        "true_lmm_lookback_gyr": [3.0, 15.0, np.nan],
        "true_lmm_log_mass": [10.0, 6.0, 9.5],
    })
    np.testing.assert_array_equal(t["exsitu_frac"], [0.2, 0.5, 0.3])
    assert t["lmm_lookback_gyr"][0] == 3.0 and np.isnan(t["lmm_lookback_gyr"][1:]).all()
    assert t["lmm_log_mass"][0] == 10.0 and np.isnan(t["lmm_log_mass"][1:]).all()


def test_mask_invalid_samples_masks_no_merger_samples_jointly():
    s = np.array([[[0.3, 2.0, 10.0], [0.4, 15.0, 10.0], [0.5, 2.0, 6.0]]])
    m = mask_invalid_samples(s)
    assert m[0, 0, 1] == 2.0 and m[0, 0, 2] == 10.0
    assert np.isnan(m[0, 1, 1:]).all() and np.isnan(m[0, 2, 1:]).all()
    np.testing.assert_array_equal(m[0, :, 0], [0.3, 0.4, 0.5])
    with pytest.raises(ValueError, match="shape"):
        mask_invalid_samples(np.zeros((2, 3)))


def _summary(ex, lb, lm, p):
    return {"exsitu_frac_map": np.asarray(ex), "lmm_lookback_gyr_map": np.asarray(lb),
            "lmm_log_mass_map": np.asarray(lm), "p_no_major_merger": np.asarray(p)}


def test_target_metrics_paper_criteria():
    truth = {"exsitu_frac": np.array([0.1, 0.2, 0.5, 0.9]),
             "lmm_lookback_gyr": np.array([1.0, 5.0, 8.0, np.nan]),
             "lmm_log_mass": np.array([9.0, 10.0, 10.5, np.nan])}
    s = _summary([0.15, 0.45, 0.55, 0.7],      # errors 0.05, 0.25, 0.05, 0.2 → 2/4 within 0.1
                 [1.5, 7.5, 9.0, 3.0],          # errors 0.5, 2.5, 1.0 on the mergers
                 [9.2, 10.7, 11.4, 10.0],       # errors 0.2, 0.7, 0.9
                 [0.1, 0.2, 0.3, 0.9])          # last one predicted NMM
    log_mstar = np.array([9.0, 10.0, 11.0, 11.0])
    m = target_metrics(s, truth, log_mstar)
    assert m["exsitu_frac"]["frac_within_0.1"] == pytest.approx(0.5)
    assert m["lmm_lookback_gyr"]["n"] == 3
    assert m["lmm_lookback_gyr"]["mae"] == pytest.approx((0.5 + 2.5 + 1.0) / 3)
    assert m["lmm_lookback_gyr"]["frac_within_1gyr"] == pytest.approx(2 / 3)
    assert m["lmm_lookback_gyr"]["frac_within_2gyr"] == pytest.approx(2 / 3)
    # log M* > 9.5: galaxies 1 and 2 (errors 0.7, 0.9) → none within 0.5 dex
    assert m["lmm_log_mass"]["n_mstar_gt_9.5"] == 2
    assert m["lmm_log_mass"]["frac_within_0.5dex"] == 0.0
    assert m["lmm_log_mass"]["frac_within_0.5dex_all_mstar"] == pytest.approx(1 / 3)


def test_predicted_nmm_removes_merger_estimate():
    truth = {"exsitu_frac": np.array([0.1, 0.2]), "lmm_lookback_gyr": np.array([2.0, 3.0]),
             "lmm_log_mass": np.array([10.0, 10.0])}
    s = _summary([0.1, 0.2], [2.0, 9.0], [10.0, 10.0], [0.0, 0.6])
    m = target_metrics(s, truth)
    assert m["lmm_lookback_gyr"]["n"] == 1 and m["lmm_lookback_gyr"]["mae"] == 0.0


def test_mass_bin_metrics_rows():
    pred = np.array([1.0, 2.0, 3.0, 5.0])
    truth = np.array([0.0, 2.0, 3.0, 3.0])
    mass = np.array([9.1, 9.2, 10.1, 12.5])
    rows = mass_bin_metrics(pred, truth, mass, [9.0, 10.0, 11.0])
    assert [r["n"] for r in rows] == [2, 1]
    assert rows[0]["bias"] == pytest.approx(0.5) and rows[0]["mae"] == pytest.approx(0.5)
    assert rows[1]["rmse"] == 0.0
    with pytest.raises(ValueError, match="increasing"):
        mass_bin_metrics(pred, truth, mass, [10.0, 9.0])


def test_nmm_classification_confusion():
    p = np.array([0.9, 0.8, 0.1, 0.6, 0.2, 0.0])
    has = np.array([False, False, False, True, True, True])
    r = nmm_classification(p, has)
    assert r["confusion"] == [[2, 1], [1, 2]]
    assert r["precision"] == pytest.approx(2 / 3)
    assert r["recall"] == pytest.approx(2 / 3)
    assert r["accuracy"] == pytest.approx(4 / 6)
    assert r["true_nmm_fraction"] == pytest.approx(0.5)


def test_evaluate_predictions_has_every_part():
    rng = np.random.default_rng(0)
    n = 200
    truth = {"exsitu_frac": rng.uniform(0, 1, n), "lmm_lookback_gyr": rng.uniform(0, 10, n),
             "lmm_log_mass": rng.uniform(8, 11, n)}
    truth["lmm_lookback_gyr"][:50] = np.nan
    truth["lmm_log_mass"][:50] = np.nan
    s = _summary(truth["exsitu_frac"] + 0.05, truth["lmm_lookback_gyr"],
                 truth["lmm_log_mass"], np.r_[np.ones(50), np.zeros(150)])
    out = evaluate_predictions(s, truth, rng.uniform(9, 12, n), [9.0, 10.0, 11.0, 12.0])
    assert out["targets"]["exsitu_frac"]["bias"] == pytest.approx(0.05)
    assert out["nmm"]["accuracy"] == 1.0
    assert len(out["mass_bins"]["lmm_log_mass"]) == 3
    assert sum(r["n"] for r in out["mass_bins"]["exsitu_frac"]) == n
