from __future__ import annotations

import numpy as np
import pytest
from scipy.special import ndtr

from ergo_ray.evaluate.calibration import (
    COVERAGE_LEVELS,
    calibration_metrics,
    coverage_curve,
    latent_normality,
    pit_histogram,
    pit_values,
    row_quantiles,
)


def _gaussian_case(n=4000, s=400, shift=0.0, seed=0):
    rng = np.random.default_rng(seed)
    mu = rng.normal(size=n)
    sigma = rng.uniform(0.5, 2.0, n)
    truth = mu + sigma * rng.normal(size=n)           # truth drawn from the posterior itself
    samples = mu[:, None] + shift * sigma[:, None] + sigma[:, None] * rng.normal(size=(n, s))
    return samples, truth


def test_row_quantiles_matches_numpy_with_nans():
    rng = np.random.default_rng(1)
    x = rng.normal(size=(50, 37))
    x[rng.random(x.shape) < 0.3] = np.nan
    x[3] = np.nan
    q = [0.05, 0.5, 0.95]
    got = row_quantiles(x, q)
    for i in range(50):
        if i == 3:
            assert np.isnan(got[i]).all()
        else:
            np.testing.assert_allclose(got[i], np.nanquantile(x[i], q))


def test_calibrated_gaussian_coverage_is_nominal():
    samples, truth = _gaussian_case()
    cv = coverage_curve(samples, truth)
    assert cv["n"] == 4000 and len(cv["levels"]) == 10
    dev = np.abs(np.asarray(cv["coverage"]) - np.asarray(cv["levels"]))
    # Within 4 binomial standard errors plus the finite-sample quantile error of 400 draws.
    assert np.all(dev < 4 * np.asarray(cv["stderr"]) + 0.01), cv
    ph = pit_histogram(pit_values(samples, truth))
    assert abs(ph["mean"] - 0.5) < 0.02
    assert ph["ks"] < 0.03


def test_shifted_posterior_shows_the_shift():
    samples, truth = _gaussian_case(shift=1.0)
    cv = coverage_curve(samples, truth)
    cov, lv = np.asarray(cv["coverage"]), np.asarray(cv["levels"])
    assert np.all(cov[2:] < lv[2:] - 0.05)   # clearly under-covered at every wide level
    pit = pit_values(samples, truth)
    ph = pit_histogram(pit)
    # PIT = Phi(eps - 1) with eps ~ N(0, 1): its mean is Phi(-1/sqrt(2)) = 0.2398.
    assert ph["mean"] == pytest.approx(ndtr(-1 / np.sqrt(2)), abs=0.02)
    assert ph["density"][0] > 2.0 and ph["density"][-1] < 0.3


def test_pit_values_ties_and_missing():
    s = np.array([[1.0, 2.0, 3.0, np.nan], [np.nan] * 4, [0.0, 0.0, 0.0, 0.0]])
    p = pit_values(s, np.array([2.0, 1.0, 0.0]))
    assert p[0] == pytest.approx(1.5 / 3)
    assert np.isnan(p[1])
    assert p[2] == pytest.approx(0.5)


def test_latent_normality():
    rng = np.random.default_rng(3)
    good = latent_normality(rng.normal(size=(5000, 3)))
    assert good["max_abs_mean"] < 0.06 and good["cov_residual"] < 0.1 and max(good["ks"]) < 0.03
    bad = latent_normality(rng.normal(size=(5000, 3)) * 2 + 1)
    assert bad["max_abs_mean"] > 0.9 and bad["max_abs_std_dev"] > 0.9
    with pytest.raises(ValueError, match="latent_normality"):
        latent_normality(np.zeros((1, 3)))


def test_calibration_metrics_per_target_conditional_on_merger():
    rng = np.random.default_rng(4)
    n, s = 300, 200
    samples = np.empty((n, s, 3))
    samples[:, :, 0] = rng.uniform(0, 1, (n, s))
    samples[:, :, 1] = rng.uniform(1, 9, (n, s))
    samples[:, :, 2] = rng.uniform(8, 11, (n, s))
    samples[:100, :, 1] = 15.0     # first 100 galaxies: no-merger posteriors
    truth = {"exsitu_frac": rng.uniform(0, 1, n), "lmm_lookback_gyr": rng.uniform(1, 9, n),
             "lmm_log_mass": rng.uniform(8, 11, n)}
    out = calibration_metrics(samples, truth)
    assert out["exsitu_frac"]["coverage"]["n"] == n
    assert out["lmm_lookback_gyr"]["coverage"]["n"] == 200
    assert out["lmm_log_mass"]["pit"]["n"] == 200
    assert out["exsitu_frac"]["coverage"]["levels"] == list(COVERAGE_LEVELS)
