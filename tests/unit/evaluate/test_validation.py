"""``validate`` on a tiny real bundle: the set's posterior, per-galaxy errors, the outputs."""

from __future__ import annotations

import json

import numpy as np
import pytest

import ergo_ray
from ergo_ray.errors import InputError
from ergo_ray.evaluate.inputs import EvalSet
from ergo_ray.evaluate.set_posterior import baseline_for_set, posterior_for_set
from ergo_ray.evaluate.validation import validate_set
from ergo_ray.evaluate.validation_output import write_validation
from ergo_ray.models.cinn import object_seeds
from tests.unit.infer.test_bundle import _images, _write

N = 40


@pytest.fixture(scope="module")
def model(tmp_path_factory):
    tmp = tmp_path_factory.mktemp("validation")
    url = str(tmp / "model")
    _write(url, tmp, baseline=True)
    return ergo_ray.load_model(url)


def _set(model, n: int = N, seed: int = 3) -> EvalSet:
    rng = np.random.default_rng(seed)
    ids = np.array([f"gal-{i:03d}" for i in range(n)], dtype=object)
    lb = np.where(rng.random(n) < 0.3, np.nan, rng.uniform(0.5, 12, n))
    cols = {
        "object_id": ids,
        "domain": np.array(["tng100", "tng50"] * (n // 2), dtype=object),
        "log_mstar": rng.uniform(9.5, 11.5, n),
        "redshift": rng.uniform(0.1, 0.4, n),
        "true_exsitu_frac": rng.uniform(0, 1, n),
        "true_lmm_lookback_gyr": lb,
        "true_lmm_log_mass": np.where(np.isnan(lb), np.nan, rng.uniform(8, 11, n)),
    }
    reps = model.represent(_images(n, seed))
    return EvalSet("sims", cols, reps=reps, sources=["mem://sims"])


def test_a_bad_galaxy_is_named_and_the_others_are_sampled_as_alone(model):
    es = _set(model)
    es.reps[7] = np.nan
    post = posterior_for_set(model, es, 30, seed=5)
    assert list(post.errors) == ["gal-007"]
    assert post.errors["gal-007"].startswith("nonfinite_condition")
    assert post.keep.sum() == N - 1 and not post.keep[7]
    assert post.samples.shape == (N - 1, 30, 3) and np.isfinite(post.samples).all()
    # every kept galaxy's samples are those of that galaxy on its own, seeded by its id
    for i in (0, 8, N - 1):
        alone = model.posterior_from_representations(
            es.reps[i:i + 1], object_ids=[es.columns["object_id"][i]]).sample(30, seed=5)
        row = int(post.keep[:i].sum())
        np.testing.assert_array_equal(post.samples[row], alone[0])
    assert post.summary["exsitu_frac_map"].shape == (N - 1,)


def test_no_sampleable_galaxy_is_an_input_error(model):
    es = _set(model, n=4)
    es.reps[:] = np.nan
    with pytest.raises(InputError, match=r"sims: no galaxy could be sampled.*nonfinite"):
        posterior_for_set(model, es, 10, seed=0)


def test_baseline_needs_mass_and_redshift(model):
    es = _set(model, n=6)
    es.columns["redshift"][2] = np.nan
    keep = np.ones(6, bool)
    samples, summary = baseline_for_set(model, es, keep, 20, seed=1)
    assert np.isnan(samples[2]).all() and np.isnan(summary["exsitu_frac_map"][2])
    good = np.arange(6) != 2
    assert np.isfinite(samples[good]).all() and np.isfinite(summary["exsitu_frac_map"][good]).all()
    # seeded by object_id and seed + 1, as the bundle's own baseline sampler
    ids = [str(o) for o in es.columns["object_id"][good]]
    direct = model.baseline_sample(es.column("log_mstar")[good], es.column("redshift")[good],
                                   20, seeds=object_seeds(ids, 2))
    np.testing.assert_array_equal(samples[good], direct)


def test_validate_counts_the_skipped_and_writes_every_output(model, tmp_path):
    es = _set(model)
    es.reps[[3, 11]] = np.nan
    res = validate_set(model, es, 30, seed=0, mass_bins=(9.5, 10.5, 11.5))
    m = res.metrics
    assert (m["n_objects"], m["n_skipped"]) == (N - 2, 2)
    assert m["model"]["n"] == N - 2 and m["baseline"]["n"] == N - 2
    assert m["domains"] == {"tng100": N // 2, "tng50": N // 2 - 2}  # 3 and 11 are tng50
    assert set(m["per_domain"]) == {"tng100", "tng50"}
    assert "gal-003" not in set(res.columns["object_id"])
    names = write_validation(str(tmp_path / "val"), res)
    assert {"metrics.json", "summary.json", "report.html", "predictions.parquet",
            "coverage.png"} <= set(names)
    assert json.loads((tmp_path / "val" / "metrics.json").read_text())["n_skipped"] == 2


def test_a_set_without_truth_is_refused(model):
    es = _set(model, n=4)
    del es.columns["true_lmm_log_mass"]
    with pytest.raises(InputError, match=r"no truth to validate against.*true_lmm_log_mass"):
        validate_set(model, es, 10, seed=0, mass_bins=(9.5, 11.5))
