"""Targets: truth encoding with no-merger sentinels and the invertible transform."""

from __future__ import annotations

import numpy as np
import pytest
import torch

from ergo_ray.errors import CheckpointError
from ergo_ray.models.targets import (
    NO_MERGER_VALUES,
    VALID_RANGES,
    Standardizer,
    TargetTransform,
    encode_truth,
    merger_mask,
)


def _truth(n: int = 200, seed: int = 0) -> np.ndarray:
    rng = np.random.default_rng(seed)
    fx = rng.uniform(0, 1, n)
    fx[:3] = [0.0, 1.0, 0.5]
    lb = rng.uniform(0, 13, n)
    lm = rng.uniform(7.5, 11, n)
    lb[::4] = np.nan
    lm[1::4] = np.nan
    y, usable = encode_truth(fx, lb, lm)
    assert usable.all()
    return y


def test_encode_truth_sentinels_outside_valid_ranges():
    y, usable = encode_truth(
        np.array([0.2, np.nan, 0.3, 1.2]),
        np.array([3.0, 2.0, np.nan, 1.0]),
        np.array([9.0, 10.0, 9.5, np.nan]),
    )
    assert usable.tolist() == [True, False, True, False]
    assert y[0].tolist() == [0.2, 3.0, 9.0]
    # Missing lookback OR missing mass: no major merger, both sentinels.
    assert y[2, 1:].tolist() == [
        NO_MERGER_VALUES["lmm_lookback_gyr"],
        NO_MERGER_VALUES["lmm_log_mass"],
    ]
    assert y[3, 1:].tolist() == [15.0, 6.0]
    lo, hi = VALID_RANGES["lmm_lookback_gyr"]
    assert not lo <= 15.0 <= hi
    lo, hi = VALID_RANGES["lmm_log_mass"]
    assert not lo <= 6.0 <= hi
    assert merger_mask(y).tolist() == [True, True, False, False]


@pytest.mark.parametrize("kind", ["linear", "logit"])
def test_transform_round_trip_numpy_and_torch(kind):
    y = _truth()
    tt = TargetTransform.fit(y, kind)
    z = tt.forward(y)
    assert np.allclose(z.mean(0), 0, atol=1e-9) and np.allclose(z.std(0), 1, atol=1e-9)
    back = tt.inverse(z)
    inside = (y[:, 0] > tt.eps) & (y[:, 0] < 1 - tt.eps)
    assert np.allclose(back[inside], y[inside], atol=1e-9)
    # Fractions at 0 or 1 come back clipped to [eps, 1 - eps] under the logit.
    if kind == "logit":
        assert np.allclose(back[:2, 0], [tt.eps, 1 - tt.eps])
        assert ((back[:, 0] > 0) & (back[:, 0] < 1)).all()
    else:
        assert np.allclose(back, y, atol=1e-9)
    zt = tt.forward(torch.as_tensor(y))
    assert torch.allclose(zt, torch.as_tensor(z))
    assert torch.allclose(tt.inverse(zt), torch.as_tensor(back))


def test_transform_json_round_trip_and_target_check():
    tt = TargetTransform.fit(_truth(), "logit")
    d = tt.to_dict()
    again = TargetTransform.from_dict(d)
    y = _truth(50, 1)
    assert np.array_equal(again.forward(y), tt.forward(y))
    with pytest.raises(CheckpointError, match="targets"):
        TargetTransform.from_dict({**d, "targets": ["a", "b", "c"]})


def test_standardizer_constant_column():
    s = Standardizer.fit(np.array([[1.0, 5.0], [3.0, 5.0], [np.nan, 1.0]]))
    assert s.mean == [2.0, 5.0] and s.scale == [1.0, 1.0]
    with pytest.raises(ValueError, match="no finite rows"):
        Standardizer.fit(np.full((2, 2), np.nan))
