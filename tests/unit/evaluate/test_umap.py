"""The joint UMAP: exact neighbours as umap-learn computes them, every point placed with its set."""

from __future__ import annotations

import numpy as np
import pytest

from ergo_ray.evaluate.umap_embedding import joint_umap


@pytest.mark.slow
def test_fit_on_subsample_places_every_point_with_its_set():
    rng = np.random.default_rng(0)
    centres = rng.normal(size=(3, 16)) * 6
    reps = {f"s{k}": rng.normal(size=(300, 16)) + c for k, c in enumerate(centres)}
    emb = joint_umap(reps, n_neighbors=10, min_dist=0.1, max_points=900, seed=1,
                     fit_points=240, n_epochs=50)
    assert {k: v.shape for k, v in emb.items()} == {f"s{k}": (300, 2) for k in range(3)}
    allp = np.concatenate(list(emb.values()))
    assert np.isfinite(allp).all()
    # the transformed points (most of them) land with their own set's cluster
    means = np.stack([v.mean(axis=0) for v in emb.values()])
    hits = [
        (np.argmin(((v[:, None, :] - means[None]) ** 2).sum(-1), axis=1) == k).mean()
        for k, v in enumerate(emb.values())
    ]
    assert min(hits) > 0.95


@pytest.mark.slow
def test_exact_neighbours_give_umaps_own_exact_graph():
    import umap

    from ergo_ray.evaluate.umap_embedding import ExactSearch, exact_neighbours

    x = np.random.default_rng(2).normal(size=(600, 12))
    # below 4,096 points umap-learn computes every distance itself: the reference graph
    own = umap.UMAP(n_neighbors=15, random_state=0, n_epochs=10, n_jobs=1).fit(x)
    idx, dist = exact_neighbours(x, 15)
    assert (idx[:, 0] == np.arange(600)).all() and (dist[:, 0] == 0).all()
    ours = umap.UMAP(n_neighbors=15, random_state=0, n_epochs=10, n_jobs=1,
                     precomputed_knn=(idx, dist, ExactSearch(x))).fit(x)
    diff = abs(own.graph_ - ours.graph_).max()
    assert diff < 1e-5
    q = x[:7] + 0.01
    qi, qd = ExactSearch(x).query(q, 3)
    brute = np.sqrt(((q[:, None, :] - x[None]) ** 2).sum(-1))
    np.testing.assert_array_equal(qi, np.argsort(brute, axis=1)[:, :3])
    np.testing.assert_allclose(qd, np.sort(brute, axis=1)[:, :3], rtol=1e-5)
