"""The sbi-style Posterior of a bundle: sample, log_prob, map; bad galaxies by object_id."""

from __future__ import annotations

import numpy as np
import pytest

import ergo_ray
from ergo_ray.errors import InputError
from tests.unit.infer.test_bundle import SIZE, _images, _write, raw_cutouts


@pytest.fixture(scope="module")
def model(tmp_path_factory):
    tmp = tmp_path_factory.mktemp("posterior")
    url = str(tmp / "model")
    _write(url, tmp, baseline=False)
    return ergo_ray.load_model(url)


def test_log_prob_is_a_normalised_density(model):
    # Importance sampling with a broad Gaussian proposal q around the posterior's samples:
    # E_q[p(θ) / q(θ)] = ∫ p(θ) dθ, which is the posterior's mass inside the support of the
    # density (ex-situ fraction within the logit's clip) only if log_prob carries every
    # Jacobian term: the flow's, the standardisation's and the logit's.
    post = model.posterior_from_images(_images(2, 7))
    samples = post.sample(4000, seed=1).astype(np.float64)
    eps = model.transform.eps
    rng = np.random.default_rng(0)
    for g in range(2):
        s = samples[g]
        mu, cov = s.mean(0), np.cov(s, rowvar=False) * 4.0
        theta = rng.multivariate_normal(mu, cov, size=40000)
        thetas = np.zeros((2, len(theta), 3))
        thetas[g] = theta
        log_p = post.log_prob(thetas)[g]
        w = np.where(np.isfinite(log_p), np.exp(log_p - _mvn_logpdf(theta, mu, cov)), 0.0)
        inside = np.mean((s[:, 0] >= eps) & (s[:, 0] <= 1 - eps))
        assert w.mean() == pytest.approx(inside, rel=0.1), (g, w.mean(), inside)


def _mvn_logpdf(x, mu, cov):
    d = x - mu
    inv = np.linalg.inv(cov)
    _, logdet = np.linalg.slogdet(cov)
    return -0.5 * (np.einsum("ni,ij,nj->n", d, inv, d) + logdet + 3 * np.log(2 * np.pi))


def test_log_prob_ranks_the_posterior_bulk_above_its_tails(model):
    post = model.posterior_from_representations(model.represent(_images(3, 8)))
    s = post.sample(500, seed=2)
    lp = post.log_prob(s)
    assert lp.shape == (3, 500)
    median = np.median(s, axis=1, keepdims=True)
    far = median + 25.0 * (np.percentile(s, 84, axis=1, keepdims=True)
                           - np.percentile(s, 16, axis=1, keepdims=True))
    far[..., 0] = np.clip(far[..., 0], 0.01, 0.99)
    assert np.all(post.log_prob(far[:, 0, :]) < np.nanmedian(lp, axis=1))


def test_map_is_inside_the_samples_and_reproducible(model):
    post = model.posterior_from_images(_images(4, 9), object_ids=list("abcd"))
    m = post.map(300, seed=3)
    s = post.sample(300, seed=3)
    assert m.shape == (4, 3)
    assert np.all(m[:, 0] >= s[:, :, 0].min(1) - 1e-6) and np.all(m[:, 0] <= s[:, :, 0].max(1))
    np.testing.assert_array_equal(m, post.map(300, seed=3))


def test_samples_depend_on_the_object_not_the_batch(model):
    imgs = _images(3, 10)
    whole = model.posterior_from_images(imgs, object_ids=["x", "y", "z"]).sample(50, seed=4)
    alone = model.posterior_from_images(imgs[1:2], object_ids=["y"]).sample(50, seed=4)
    np.testing.assert_array_equal(whole[1], alone[0])


def test_a_bad_galaxy_is_named_and_the_others_survive(model):
    raw = raw_cutouts(3, seed=5)
    raw[1] = np.nan                         # cannot be prepared
    post = model.posterior_from_images(raw, object_ids=["g-0", "g-1", "g-2"])
    assert set(post.errors) == {"g-1"} and "all_masked" in post.errors["g-1"]
    s = post.sample(40, seed=0)
    assert np.isnan(s[1]).all() and np.isfinite(s[[0, 2]]).all()
    lp = post.log_prob(s[:, 0, :])
    assert np.isnan(lp[1]) and np.isfinite(lp[[0, 2]]).all()
    # a non-finite representation or observable is a bad galaxy too, named by its ID
    reps = model.represent(_images(2, 11))
    reps[0, 5] = np.inf
    post = model.posterior_from_representations(reps, object_ids=["r-0", "r-1"])
    assert list(post.errors) == ["r-0"] and "nonfinite_condition" in post.errors["r-0"]
    assert np.isfinite(post.map(40)[1]).all()


def test_entry_points_check_their_input(model):
    with pytest.raises(InputError, match="images must be"):
        model.posterior_from_images(np.zeros((2, 256), np.float32))
    with pytest.raises(InputError, match="representations"):
        model.posterior_from_representations(np.zeros((2, 3, SIZE, SIZE), np.uint8))
    with pytest.raises(InputError, match="object_ids"):
        model.posterior_from_representations(np.zeros((2, 256), np.float32), object_ids=["a"])
    post = model.posterior_from_representations(np.zeros((2, 256), np.float32))
    with pytest.raises(InputError, match="theta must be"):
        post.log_prob(np.zeros((3, 3)))


def test_the_catalogue_actor_computes_its_rows_through_the_posterior(tmp_path):
    from ergo_ray.infer.predictors import PosteriorPredictor
    from ergo_ray.infer.readers import _rows_table
    from ergo_ray.io.schemas import posterior_summary_columns

    url = str(tmp_path / "model")
    _write(url, tmp_path, baseline=False, observables=("redshift", "i_mag"))
    imgs, ids = _images(5, 12), [f"o{i}" for i in range(5)]
    z, mag = np.array([0.1, 0.2, np.nan, 0.35, 0.15]), np.array([17.0, 18, 19, 16.5, 18.2])
    batch = _rows_table([(o, None, "hsc") for o in ids], imgs,
                        [None, None, None, "o3: unreadable", None], "unit-0", SIZE,
                        observed={"redshift": z, "i_mag": mag})
    pred = PosteriorPredictor(url, None, n_samples=40, seed=6)
    rows = pred(batch).to_pandas().set_index("object_id")
    # the galaxy without a redshift is an error row naming it; the reader's error passes
    assert rows.loc["o2", "error"] == ("o2: no redshift in the input catalogue (the model "
                                       "is conditioned on redshift, i_mag)")
    assert rows.loc["o3", "error"] == "o3: unreadable"
    assert list(rows["status"]) == ["ok", "ok", "error", "error", "ok"]
    good = [0, 1, 4]
    post = pred.bundle.posterior_from_images(
        imgs[good], observables={"redshift": z[good], "i_mag": mag[good]},
        object_ids=[ids[i] for i in good])
    want = post.summaries(40, seed=6)
    for col in posterior_summary_columns():
        np.testing.assert_allclose(rows.loc[[ids[i] for i in good], col], want[col],
                                   rtol=1e-5, atol=1e-6, err_msg=col)
        assert rows.loc[["o2", "o3"], col].isna().all()
    np.testing.assert_allclose(rows.loc[[ids[i] for i in good], "ood_score"],
                               post.ood_score(), rtol=1e-6)
    # the API names the same galaxy, with the reason code in front
    alone = pred.bundle.posterior_from_images(imgs, observables={"redshift": z, "i_mag": mag},
                                              object_ids=ids)
    assert alone.errors == {"o2": "nonfinite_condition: no redshift in the observables (the "
                                  "model is conditioned on redshift, i_mag)"}
