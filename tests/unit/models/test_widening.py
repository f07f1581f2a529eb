"""The shift-aware widening on toy problems with a known answer (issue 17)."""

from __future__ import annotations

import itertools

import numpy as np
import pytest
import torch

from ergo_ray.models.widening import OodWidening


def _expit(u):
    return 1 / (1 + np.exp(-u))


def _toy(n: int, power: float, seed: int, s: int = 300):
    """Gaussian posteriors in logit ex-situ of width 0.4 whose truths scatter 0.4·ood^power.

    The posterior is right in domain (ood = 1) and too narrow by ood^power beyond it: the
    widening that makes it calibrated is exactly s = ood^power.
    """
    rng = np.random.default_rng(seed)
    ood = np.exp(rng.uniform(np.log(0.5), np.log(6.0), n))
    m = rng.normal(-1.0, 1.0, n)
    samples = np.empty((n, s, 3), np.float32)
    samples[:, :, 0] = _expit(m[:, None] + 0.4 * rng.normal(size=(n, s)))
    samples[:, :, 1], samples[:, :, 2] = 15.0, 6.0  # every sample: no major merger
    truth = np.column_stack([_expit(m + 0.4 * ood**power * rng.normal(size=n)),
                             np.full(n, 15.0), np.full(n, 6.0)])
    return samples, truth, ood


def _coverage(samples, truth, level):
    lo, hi = np.percentile(samples[:, :, 0], [50 * (1 - level), 50 * (1 + level)], axis=1)
    return float(((truth[:, 0] >= lo) & (truth[:, 0] <= hi)).mean())


def test_coverage_is_nominal_in_every_ood_bin_after_the_step():
    w = OodWidening.fit(*_toy(6000, 0.5, seed=0))
    c0, c1 = w.coef["exsitu_frac"]
    assert abs(c1 - 0.5) < 0.1 and abs(c0) < 0.1  # the known answer: s = ood^0.5
    samples, truth, ood = _toy(8000, 0.5, seed=1)  # fresh galaxies
    out = w.apply(samples, ood)
    edges = [0.5, 1.0, 2.0, 3.5, 6.0]
    for lo, hi in itertools.pairwise(edges):
        sel = (ood >= lo) & (ood < hi)
        for level in (0.68, 0.9):
            assert abs(_coverage(out[sel], truth[sel], level) - level) < 0.04, (lo, level)
        if lo >= 2.0:  # before the step the far bins are badly overconfident
            assert _coverage(samples[sel], truth[sel], 0.68) < 0.55
    # the merger targets (all "no merger" here) are untouched
    assert np.array_equal(out[:, :, 1:], samples[:, :, 1:])


def test_no_widening_where_the_model_is_calibrated():
    w = OodWidening.fit(*_toy(4000, 0.0, seed=2))
    ood = np.array([0.5, 1.0, 3.0, 6.0])
    assert np.allclose(w.scale("exsitu_frac", ood), 1.0, atol=0.08)


def test_no_extrapolation_beyond_the_fitted_range_and_nan_scores_are_left_alone():
    w = OodWidening.fit(*_toy(4000, 0.5, seed=3))
    far = w.scale("exsitu_frac", np.array([6.0, 60.0, 6000.0]))
    assert far[1] == pytest.approx(far[2]) and far[1] == pytest.approx(far[0], rel=0.05)
    assert w.scale("exsitu_frac", np.array([np.nan]))[0] == 1.0


def test_round_trip_and_torch_input():
    samples, truth, ood = _toy(2000, 0.5, seed=4)
    w = OodWidening.fit(samples, truth, ood, info={"domains": ["simba"]})
    back = OodWidening.from_dict(w.to_dict())
    assert back == w and back.fit_info["domains"] == ["simba"]
    a = w.apply(samples[:50], ood[:50])
    t = back.apply(torch.from_numpy(samples[:50]), ood[:50])
    assert isinstance(t, torch.Tensor) and t.dtype == torch.float32
    np.testing.assert_allclose(t.numpy(), a, rtol=1e-6)
    with pytest.raises(ValueError, match="kind"):
        OodWidening.from_dict({**w.to_dict(), "kind": "other"})


def test_merger_targets_widen_only_their_in_range_samples():
    rng = np.random.default_rng(5)
    n, s = 3000, 200
    ood = np.exp(rng.uniform(0, np.log(5), n))
    t_mean = rng.uniform(2, 10, n)
    samples = np.empty((n, s, 3), np.float32)
    samples[:, :, 0] = 0.3
    samples[:, :, 1] = t_mean[:, None] + 0.3 * rng.normal(size=(n, s))
    samples[:, :, 1][:, :40] = 15.0  # 20 % "no merger"
    samples[:, :, 2] = 6.0
    truth = np.column_stack([np.full(n, 0.3), t_mean + 0.3 * ood * rng.normal(size=n),
                             np.full(n, 9.0)])
    w = OodWidening.fit(samples, truth, ood, targets=("lmm_lookback_gyr",))
    assert w.coef["lmm_lookback_gyr"][1] > 0.6
    out = w.apply(samples, ood)
    assert (out[:, :40, 1] == 15.0).all()  # p_no_major_merger is unchanged
    assert np.array_equal(out[:, :, 0], samples[:, :, 0])
    assert out[:, 40:, 1].min() >= 0.0 and out[:, 40:, 1].max() <= 13.7
