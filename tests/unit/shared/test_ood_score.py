"""Per-galaxy OOD score against a bundle's reference representations."""

from __future__ import annotations

import numpy as np
import pytest

from ergo_ray.errors import InputError
from ergo_ray.shared.ood_score import OodReference, build_reference


def _reps(n: int, seed: int, shift: float = 0.0) -> np.ndarray:
    rng = np.random.default_rng(seed)
    x = rng.normal(size=(n, 12)) * np.linspace(0.5, 3, 12) + shift
    return x.astype(np.float32)


def test_calibrated_on_training_domain():
    ref = build_reference(_reps(3000, 0), n_reference=1000, k=8, metric="l1")
    assert len(ref.reference) == 1000
    inside = ref.score(_reps(2000, 1))
    assert 0.02 < (inside > 1).mean() < 0.09
    far = ref.score(_reps(500, 2, shift=4.0))
    assert (far > 1).mean() > 0.95 and np.median(far) > 2 * np.median(inside)


def test_score_formula_against_a_brute_force_reference():
    # Independent reference: scipy's pairwise distances and a full sort, in float64.
    from scipy.spatial.distance import cdist

    ref = build_reference(_reps(400, 3), n_reference=200, k=4, metric="l2")
    q = _reps(5, 4).astype(np.float64)
    std = (q - ref.mean) / ref.scale
    rstd = (np.asarray(ref.reference, np.float64) - ref.mean) / ref.scale
    d = cdist(std, rstd)                                   # Euclidean
    d_k = np.sort(d, axis=1)[:, 3]                         # 4th neighbour
    nearest = np.argmin(d, axis=1)
    self_d = np.sort(cdist(rstd, rstd), axis=1)[:, 4]      # 4th neighbour, self excluded
    expect = d_k / self_d[nearest]
    assert np.allclose(ref.raw_score(q.astype(np.float32)), expect, rtol=1e-4)
    assert np.allclose(ref.score(q.astype(np.float32)), expect / ref.norm, rtol=1e-4)


def test_round_trip_and_bad_rows():
    ref = build_reference(_reps(300, 5), n_reference=100, k=3)
    again = OodReference.from_parts(ref.to_dict(), ref.reference, ref.self_kdist)
    q = _reps(10, 6)
    q[2] = np.nan
    a, b = ref.score(q), again.score(q)
    assert np.isnan(a[2]) and np.allclose(np.delete(a, 2), np.delete(b, 2))


def test_small_training_set_uses_fallback_holdout():
    ref = build_reference(
        _reps(20, 7), n_reference=32, k=8, fallback_holdout=_reps(30, 8)
    )
    assert len(ref.reference) == 11  # k + 1 training reps kept out for calibration
    assert ref.norm > 0
    with pytest.raises(InputError, match="at least"):
        build_reference(_reps(5, 9), n_reference=32, k=8)


@pytest.mark.parametrize("metric", ["l1", "l2"])
def test_device_resident_scorer_matches_the_bundle_scorer(metric):
    import torch

    from ergo_ray.infer.predictors import OodOnDevice

    ref = build_reference(_reps(1500, 6), n_reference=600, k=8, metric=metric)
    q = _reps(300, 7, shift=0.5)
    q[3, 2] = np.nan
    dev = OodOnDevice(ref, torch.device("cpu"))  # the catalogue actor's CUDA path, on CPU
    got = dev.score(torch.as_tensor(q))
    want = ref.score(q)
    assert np.isnan(got[3]) and np.isnan(want[3])
    np.testing.assert_allclose(got, want, rtol=1e-5)
