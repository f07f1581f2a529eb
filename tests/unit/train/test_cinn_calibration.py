"""Coverage and accuracy figures of posterior_metrics against hand-built known answers."""

from __future__ import annotations

import numpy as np
import pytest

from ergo_ray.models.targets import encode_truth
from ergo_ray.train.cinn_calibration import posterior_metrics


def test_coverage_counts_truths_inside_the_central_intervals():
    # Every galaxy's posterior is the same: 2001 evenly spaced ex-situ samples on [0.2, 0.6]
    # (p16 = 0.264, p84 = 0.536, p05 = 0.22, p95 = 0.58), mergers 5 Gyr ago at log M 10.
    s = 2001
    fx = np.linspace(0.2, 0.6, s)
    truth_fx = np.array([0.21, 0.25, 0.27, 0.40, 0.53, 0.55, 0.59, 0.65])
    n = len(truth_fx)
    samples = np.empty((n, s, 3), np.float32)
    samples[:, :, 0] = fx
    samples[:, :, 1] = np.linspace(4.0, 6.0, s)
    samples[:, :, 2] = np.linspace(9.0, 11.0, s)
    y, usable = encode_truth(truth_fx, np.full(n, 5.0), np.full(n, 10.0))
    assert usable.all()
    m = posterior_metrics(samples, y, np.full(n, 10.5), grid=256)
    c = m["coverage"]["exsitu_frac"]
    # inside [0.264, 0.536]: 0.27, 0.40, 0.53; inside [0.22, 0.58]: also 0.25, 0.55
    assert c["n"] == n
    assert c["c68"] == pytest.approx(3 / 8)
    assert c["c90"] == pytest.approx(5 / 8)
    # the merger targets' truths sit at the centre of every posterior
    assert m["coverage"]["lmm_lookback_gyr"] == {"n": n, "c68": 1.0, "c90": 1.0}
    # MAP of a flat posterior on [0.2, 0.6]: somewhere inside it; |MAP − truth| ≤ 0.1 then
    # holds for the truths near the middle only, never for 0.65
    acc = m["accuracy"]
    assert 0.0 < acc["exsitu_frac_within_0.1"] < 1.0
    assert acc["nmm_accuracy"] == 1.0 and acc["true_nmm_fraction"] == 0.0
