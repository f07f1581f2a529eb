"""Exact k-NN: faiss (CPU, L1) and torch agree with brute force; the diagonal can be exact."""

from __future__ import annotations

import numpy as np
import pytest
import torch

from ergo_ray.shared.knn import knn_blocks, kth_neighbour_distance


def _brute(q: np.ndarray, r: np.ndarray, k: int, p: float, exclude_self: bool):
    d = torch.cdist(torch.as_tensor(q, dtype=torch.float64),
                    torch.as_tensor(r, dtype=torch.float64), p=p).numpy()
    order = np.argsort(d, axis=1, kind="stable")
    kk = k + 1 if exclude_self else k
    rows = np.arange(len(q))
    return d[rows, order[:, kk - 1]], order[:, 1 if exclude_self else 0]


@pytest.mark.parametrize("metric", ["l1", "l2"])
@pytest.mark.parametrize("exclude_self", [False, True])
def test_kth_distance_matches_brute_force(metric, exclude_self):
    rng = np.random.default_rng(4)
    ref = rng.normal(size=(700, 32)).astype(np.float32)
    q = ref if exclude_self else rng.normal(size=(300, 32)).astype(np.float32)
    want, want_nn = _brute(q, ref, 5, 1.0 if metric == "l1" else 2.0, exclude_self)
    got, nn = kth_neighbour_distance(q, ref, 5, metric=metric, exclude_self=exclude_self,
                                     block=64, device="cpu", return_index=True)
    np.testing.assert_allclose(got, want, rtol=1e-5)
    assert got.dtype == np.float64 and nn.dtype == np.int64
    assert (nn == want_nn).mean() > 0.99  # ties aside, the same nearest point


def test_too_few_reference_points():
    x = np.zeros((3, 4), np.float32)
    with pytest.raises(ValueError, match="k=3 needs at least 4"):
        kth_neighbour_distance(x, x, 3, exclude_self=True, device="cpu")


def test_zero_diagonal_sets_each_points_own_distance_to_exactly_zero():
    x = torch.as_tensor(np.random.default_rng(3).normal(size=(300, 64)) * 10)
    plain = list(knn_blocks(x, x, 4, p=2.0, block=128))
    zeroed = list(knn_blocks(x, x, 4, p=2.0, block=128, zero_diagonal=True))
    d0 = torch.cat([v for _, v, _ in plain])
    d1 = torch.cat([v for _, v, _ in zeroed])
    i1 = torch.cat([i for _, _, i in zeroed])
    assert (d0[:, 0] > 0).any()  # cdist's matrix-product path leaves a residue on the diagonal
    assert (d1[:, 0] == 0).all() and (i1[:, 0] == torch.arange(300)).all()
    torch.testing.assert_close(d1[:, 1:], d0[:, 1:])
