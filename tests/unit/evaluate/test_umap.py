"""The joint UMAP fitted on a subsample: every point placed, the sets' layout kept."""

from __future__ import annotations

import numpy as np
import pytest

from ergo_ray.evaluate.comparison import joint_umap


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
