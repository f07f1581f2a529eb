"""The shift-aware widening travels in the bundle and is applied wherever posteriors are drawn;
the size observables are derived from the Petrosian radii (issue 17)."""

from __future__ import annotations

import json

import numpy as np
import pytest

import ergo_ray
from ergo_ray.errors import InputError
from ergo_ray.infer.predictors import PosteriorPredictor
from ergo_ray.models.cinn import object_seeds
from ergo_ray.models.observables import observable_values, source_columns
from ergo_ray.models.widening import OodWidening
from ergo_ray.shared import bundle_format as bd

from .test_bundle import _images, _write


@pytest.fixture(scope="module")
def bundles(tmp_path_factory):
    tmp = tmp_path_factory.mktemp("widen")
    plain = str(tmp / "plain")
    _write(plain, tmp, baseline=True)
    _, files = bd.read_verified(plain)
    b = ergo_ray.load_model(plain)
    reps = b.represent(_images(40, 7))
    ood = b.ood_score(reps)
    # a strong, known widening: s = e^0.4 · ood^0.8 on the fitted range of log ood
    w = OodWidening(("exsitu_frac",), {"exsitu_frac": (0.4, 0.8)},
                    (float(np.log(ood).min()), float(np.log(ood).max())),
                    fit_info={"domains": ["simba"]})
    widened = str(tmp / "widened")
    bd.write_bundle(widened, {**files, bd.WIDENING_FILE: json.dumps(w.to_dict()).encode()})
    return plain, widened, w


def test_round_trip_keeps_the_step_and_sample_posterior_applies_it(bundles):
    plain, widened, w = bundles
    a, b = ergo_ray.load_model(plain), ergo_ray.load_model(widened)
    assert a.widening is None and b.widening == w and "widening=True" in repr(b)
    assert b.model_id != a.model_id  # the step is part of the model's identity
    reps = a.represent(_images(12, 3))
    raw = a.sample_posterior(reps, 60, seed=2)
    got = b.sample_posterior(reps, 60, seed=2)
    np.testing.assert_allclose(got, w.apply(raw, a.ood_score(reps)), rtol=1e-5, atol=1e-6)
    assert np.array_equal(got[:, :, 1:], raw[:, :, 1:])  # only the ex-situ fraction
    wider = np.std(np.log(got[:, :, 0] / (1 - got[:, :, 0])), axis=1)
    assert (wider > np.std(np.log(raw[:, :, 0] / (1 - raw[:, :, 0])), axis=1)).all()
    # validate and compare draw through sample_condition: the same widened samples
    assert np.array_equal(b.sample_condition(b.condition(reps), 60, seed=2), got)
    # the baseline is the mass+redshift reference, never widened
    m, z = np.array([10.0, 11.0]), np.array([0.2, 0.3])
    assert np.array_equal(a.baseline_sample(m, z, 30, seed=1), b.baseline_sample(m, z, 30, seed=1))


def test_the_catalog_actor_applies_the_same_step(bundles):
    _, widened, _ = bundles
    pred = PosteriorPredictor(widened, None, n_samples=50, seed=4)
    imgs = _images(8, 5)
    ids = [f"g{i}" for i in range(8)]
    summ, ood, reps, errors = pred.infer(imgs, ids)
    b = pred.bundle
    want = b.summarize(b.sample_posterior(imgs, 50, seeds=object_seeds(ids, 4)))
    assert errors == [None] * 8
    np.testing.assert_allclose(summ["exsitu_frac_std"], want["exsitu_frac_std"], rtol=1e-4)
    np.testing.assert_allclose(summ["exsitu_frac_p95"], want["exsitu_frac_p95"], rtol=1e-4)
    np.testing.assert_allclose(ood, b.ood_score(reps), rtol=1e-5)


def test_size_observables_from_petrosian_radii():
    z = np.array([0.1, 0.3, np.nan, 0.2])
    r50, r90 = np.array([5.0, 3.0, 2.0, -1.0]), np.array([12.0, 9.0, 6.0, 8.0])
    names = ("redshift", "log_r50_kpc", "log_r90_kpc", "concentration")
    assert source_columns(names) == ("redshift", "r50_px", "r90_px")
    v = observable_values(names, {"redshift": z, "r50_px": r50, "r90_px": r90})
    from astropy.cosmology import FlatLambdaCDM

    tng = FlatLambdaCDM(H0=67.74, Om0=0.3089, Ob0=0.0486)  # written out, not the package's
    kpc = tng.kpc_proper_per_arcmin(0.3).value / 60 * 0.168
    assert v["log_r90_kpc"][1] == pytest.approx(np.log10(9.0 * kpc))
    assert v["log_r50_kpc"][1] == pytest.approx(np.log10(3.0 * kpc))
    assert v["concentration"][:3].tolist() == [2.4, 3.0, 3.0]
    assert np.isnan(v["log_r90_kpc"][2]) and np.isnan(v["concentration"][3])
    # a column given directly wins where it is finite
    direct = observable_values(("log_r90_kpc",), {"log_r90_kpc": np.array([1.0, np.nan]),
                                                  "r90_px": np.array([9.0, 9.0]),
                                                  "redshift": np.array([0.3, 0.3])})
    assert direct["log_r90_kpc"][0] == 1.0
    assert direct["log_r90_kpc"][1] == pytest.approx(np.log10(9.0 * kpc))


def test_a_bundle_on_sizes_takes_them_or_their_radii(tmp_path):
    url = str(tmp_path / "m")
    _write(url, tmp_path, baseline=False, observables=("redshift",))
    _, files = bd.read_verified(url)
    tr = json.loads(files["transforms.json"])
    b = ergo_ray.load_model(url)
    # same network, read as conditioned on the size instead of the redshift
    tr["observables"] = ["log_r90_kpc"]
    url2 = str(tmp_path / "m2")
    bd.write_bundle(url2, {**files, "transforms.json": json.dumps(tr).encode()})
    b2 = ergo_ray.load_model(url2)
    reps = b.represent(_images(3, 1))
    r90, z = np.array([8.0, 10.0, 12.0]), np.array([0.1, 0.2, 0.3])
    from_radii = b2.condition(reps, {"r90_px": r90, "redshift": z})
    size = observable_values(("log_r90_kpc",), {"r90_px": r90, "redshift": z})["log_r90_kpc"]
    np.testing.assert_allclose(from_radii[:, -1], size, rtol=1e-6)
    assert np.array_equal(b2.condition(reps, {"log_r90_kpc": size}), from_radii)
    with pytest.raises(InputError, match="missing log_r90_kpc"):
        b2.condition(reps, {"r90_px": r90})
