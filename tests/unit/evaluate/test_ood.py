from __future__ import annotations

import numpy as np
import pytest
from scipy.spatial import cKDTree

from ergo_ray.errors import InputError
from ergo_ray.evaluate.ood import (
    fraction_table_markdown,
    ood_scores,
    pair_ranking,
    score_pair,
    standardise,
)


def _clouds(seed=0, n=1000, d=8):
    rng = np.random.default_rng(seed)
    return {
        "a": rng.normal(size=(n, d)),
        "b": rng.normal(size=(n, d)),            # same distribution as a
        "s025": rng.normal(size=(n, d)) + 0.25,
        "s050": rng.normal(size=(n, d)) + 0.5,
        "s100": rng.normal(size=(n, d)) + 1.0,
    }


def test_score_pair_matches_ckdtree_reference():
    rng = np.random.default_rng(1)
    a, b = rng.normal(size=(300, 6)), rng.normal(size=(300, 6)) + 0.3
    got = score_pair(a.astype(np.float32), b.astype(np.float32), k=8, metric="l1")
    num = cKDTree(b).query(a, k=8, p=1)[0][:, -1]
    den = cKDTree(a).query(a, k=9, p=1)[0][:, -1]     # x is its own first neighbour
    np.testing.assert_allclose(got, num / den, rtol=1e-4)


def test_standardise_over_all_sets():
    rng = np.random.default_rng(2)
    out = standardise({"x": rng.normal(3, 2, (500, 4)), "y": rng.normal(3, 2, (500, 4))})
    allx = np.concatenate(list(out.values()))
    np.testing.assert_allclose(allx.mean(axis=0), 0, atol=1e-5)
    np.testing.assert_allclose(allx.std(axis=0), 1, atol=1e-4)


def test_identical_sets_give_about_five_percent_and_shift_grows():
    pairs = [("a", "b"), ("b", "a")] + [p for s in ("s025", "s050", "s100")
                                         for p in ((s, "a"), ("a", s))]
    res = ood_scores(_clouds(), k=8, metric="l1", quantile=0.95, max_per_set=1000, seed=42,
                     pairs=pairs)
    frac = res.fraction_above(1.0)
    # The diagonal is 5 % by construction (self-scores over their own 95th percentile).
    for name in res.names:
        assert frac[(name, name)] == pytest.approx(0.05, abs=0.005)
    # Two draws of one distribution: about 5 % (sampling noise of one reference draw).
    assert 0.005 < frac[("a", "b")] < 0.12
    assert 0.005 < frac[("b", "a")] < 0.12
    # Shifted clouds: more galaxies above 1, growing with the shift, both directions.
    assert frac[("s025", "a")] < frac[("s050", "a")] < frac[("s100", "a")]
    assert frac[("a", "s025")] < frac[("a", "s050")] < frac[("a", "s100")]
    assert frac[("s050", "a")] > 0.2 and frac[("s100", "a")] > 0.6
    assert res.scales["a"] > 1.0
    rank = pair_ranking(res, "a")
    assert [r["set"] for r in rank] == ["b", "s025", "s050", "s100"]
    assert rank[0]["rank"] == 1


def test_scores_are_reproducible_and_seeded():
    c = _clouds(n=300)
    r1 = ood_scores(c, max_per_set=300, seed=7, pairs=[("a", "s050")])
    r2 = ood_scores(c, max_per_set=300, seed=7, pairs=[("a", "s050")])
    np.testing.assert_array_equal(r1.scores[("a", "s050")], r2.scores[("a", "s050")])


def test_equal_size_subsamples_and_table():
    rng = np.random.default_rng(3)
    res = ood_scores({"big": rng.normal(size=(900, 4)), "small": rng.normal(size=(200, 4))},
                     max_per_set=500)
    assert res.sizes[("big", "small")] == 200 and res.sizes[("small", "big")] == 200
    assert res.sizes[("big", "big")] == 250     # half of the 500 capped rows
    js = res.to_json()
    assert set(js["table"]) == {"big", "small"}
    assert {p["label"] for p in js["pairs"]} == {"big-big", "big-small", "small-big", "small-small"}
    md = fraction_table_markdown(res)
    assert md.splitlines()[0].startswith("| query \\ reference | big | small |")
    assert "5.0 %" in md


def test_too_few_points_is_an_input_error():
    rng = np.random.default_rng(4)
    with pytest.raises(InputError, match="'tiny' has 10 representations"):
        ood_scores({"ok": rng.normal(size=(100, 4)), "tiny": rng.normal(size=(10, 4))}, k=8)
    with pytest.raises(InputError, match="one D"):
        ood_scores({"x": rng.normal(size=(100, 4)), "y": rng.normal(size=(100, 5))})
    with pytest.raises(KeyError, match="observed set"):
        pair_ranking(ood_scores({"x": rng.normal(size=(100, 4))}), "nope")
