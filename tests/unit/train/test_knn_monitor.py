from __future__ import annotations

import numpy as np
import pytest
import torch

from ergo_ray.train.knn_monitor import knn_predict, knn_r2, r2_score


def test_r2_score():
    y = np.array([1.0, 2.0, 3.0, 4.0])
    assert r2_score(y, y) == 1.0
    assert r2_score(y, np.full(4, y.mean())) == 0.0
    assert r2_score(y, y[::-1]) < 0
    assert np.isnan(r2_score(np.ones(3), np.ones(3)))
    assert np.isnan(r2_score(np.ones(1), np.ones(1)))


def test_knn_predict_is_mean_of_nearest_values():
    ref = torch.tensor([[0.0], [1.0], [2.0], [10.0]])
    vals = torch.tensor([0.0, 1.0, 2.0, 10.0])
    pred = knn_predict(ref, vals, torch.tensor([[0.9], [9.0]]), k=2)
    assert torch.allclose(pred, torch.tensor([0.5, 6.0]))
    assert knn_predict(ref, vals, torch.tensor([[0.0]]), k=10).item() == pytest.approx(3.25)


def test_knn_r2_recovers_a_smooth_relation_and_ignores_noise():
    rng = np.random.default_rng(0)
    ref = rng.normal(size=(2000, 8)).astype(np.float32)
    qry = rng.normal(size=(300, 8)).astype(np.float32)
    ref[:, 0] *= 50.0  # standardisation removes the scale difference
    qry[:, 0] *= 50.0
    f = lambda x: x[:, 0] / 50.0 + 0.5 * x[:, 1]  # noqa: E731
    r2 = knn_r2(ref, {"smooth": f(ref), "noise": rng.normal(size=2000)},
                qry, {"smooth": f(qry), "noise": rng.normal(size=300)}, k=10)
    assert r2["smooth"] > 0.85
    assert r2["noise"] < 0.1


def test_knn_r2_uses_only_finite_rows():
    rng = np.random.default_rng(1)
    ref = rng.normal(size=(400, 2))
    qry = rng.normal(size=(100, 2))
    t_ref, t_qry = ref[:, 0].copy(), qry[:, 0].copy()
    t_ref[:200] = np.nan  # e.g. an observed domain without truth
    t_qry[:50] = np.nan
    r2 = knn_r2(ref, {"a": t_ref, "none": np.full(400, np.nan)},
                qry, {"a": t_qry, "none": np.full(100, np.nan)}, k=5)
    assert r2["a"] > 0.8
    assert np.isnan(r2["none"])
