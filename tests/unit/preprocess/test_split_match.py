"""Splits on root_id and one-to-one box matching."""

from __future__ import annotations

import numpy as np
import pytest

from ergo_ray.errors import ConfigError
from ergo_ray.preprocess.match import BoxTolerance, match_sets
from ergo_ray.preprocess.split import assign_split

TOL = np.array([0.01, 0.1, 5.0])


def test_split_is_per_root_id_and_stable_when_the_set_grows():
    roots = [f"tng100-1-{i:07d}" for i in range(3000)]
    objects = [r for r in roots for _ in range(4)]  # 4 projections each
    split = assign_split(objects, (0.8, 0.1, 0.1), seed=42)
    by_root: dict[str, set[str]] = {}
    for r, s in zip(objects, split, strict=True):
        by_root.setdefault(r, set()).add(s)
    assert all(len(v) == 1 for v in by_root.values())  # no root_id in two splits
    frac = {s: np.mean(split == s) for s in ("train", "val", "test")}
    assert frac["train"] == pytest.approx(0.8, abs=0.03)
    assert frac["val"] == pytest.approx(0.1, abs=0.02)
    # Adding galaxies (and reordering) keeps every existing assignment.
    more = [f"tng100-1-{i:07d}" for i in range(3000, 5000)] + roots[::-1]
    again = dict(zip(more, assign_split(more, (0.8, 0.1, 0.1), seed=42), strict=True))
    assert all(again[r] == next(iter(by_root[r])) for r in roots)
    # Another seed gives another split.
    other = assign_split(roots, (0.8, 0.1, 0.1), seed=43)
    assert np.mean(other != assign_split(roots, (0.8, 0.1, 0.1), seed=42)) > 0.2


def test_split_fraction_edge_cases():
    roots = [str(i) for i in range(500)]
    assert set(assign_split(roots, (0.0, 1.0, 0.0), seed=1)) == {"val"}
    assert set(assign_split(roots, (1.0, 0.0, 0.0), seed=1)) == {"train"}
    assert assign_split([], seed=1).size == 0
    with pytest.raises(ConfigError, match="sum"):
        assign_split(roots, (0.5, 0.2, 0.2), seed=1)


def _catalogue(rng, n, mag_shift=0.0):
    return np.stack([rng.uniform(0.1, 0.4, n), rng.normal(19 + mag_shift, 1.0, n),
                     rng.lognormal(np.log(12), 0.4, n)], axis=1)


def _check(obs, sim, oi, si):
    assert len(set(oi.tolist())) == oi.size  # each observed galaxy at most once
    assert len(set(si.tolist())) == si.size  # each simulated galaxy at most once
    assert np.all(np.abs(obs[oi] - sim[si]) <= TOL + 1e-12)  # every pair inside the box
    # Maximal: no unmatched target has an unused observed galaxy inside its box.
    unused = np.setdiff1d(np.arange(len(obs)), oi)
    for t in np.setdiff1d(np.arange(len(sim)), si):
        if np.isfinite(sim[t]).all():
            d = np.abs(obs[unused] - sim[t])
            assert not np.any((d <= TOL).all(axis=1) & np.isfinite(obs[unused]).all(axis=1))


@pytest.mark.parametrize(("n_obs", "n_sim", "shift"), [(3000, 3000, 0.0), (1500, 4000, 0.4),
                                                        (4000, 800, -0.3)])
def test_match_is_one_to_one_inside_the_box_and_maximal(n_obs, n_sim, shift):
    rng = np.random.default_rng(n_obs + n_sim)
    obs, sim = _catalogue(rng, n_obs), _catalogue(rng, n_sim, shift)
    obs[::97, 1] = np.nan  # NaN rows are never matched
    oi, si = match_sets(obs, sim, BoxTolerance(), seed=42)
    assert oi.size > 0.5 * min(n_obs, n_sim)
    assert np.isfinite(obs[oi]).all()
    _check(obs, sim, oi, si)


def test_match_is_seeded_and_comparable_to_the_sequential_algorithm():
    rng = np.random.default_rng(5)
    obs, sim = _catalogue(rng, 2500), _catalogue(rng, 2500, 0.3)
    a = match_sets(obs, sim, seed=42)
    b = match_sets(obs, sim, seed=42)
    c = match_sets(obs, sim, seed=7)
    assert all(np.array_equal(x, y) for x, y in zip(a, b, strict=True))
    assert not np.array_equal(a[1], c[1])
    # The paper's sequential loop, written plainly: same number of pairs within noise.
    order = np.random.default_rng(42).permutation(len(sim))
    free = np.ones(len(obs), dtype=bool)
    n_seq = 0
    for t in order:
        inbox = free & (np.abs(obs - sim[t]) <= TOL).all(axis=1)
        if inbox.any():
            free[np.flatnonzero(inbox)[0]] = False
            n_seq += 1
    assert abs(a[0].size - n_seq) <= 0.03 * n_seq


def test_match_degenerate_inputs():
    empty = np.zeros((0, 3))
    one = np.array([[0.2, 19.0, 10.0]])
    assert match_sets(empty, one)[0].size == 0
    assert match_sets(one, empty)[0].size == 0
    oi, si = match_sets(one, one + np.array([0.02, 0, 0]))  # outside the z box
    assert oi.size == 0
    oi, si = match_sets(one, np.vstack([one, one]))  # two targets, one partner
    assert oi.tolist() == [0] and si.size == 1
