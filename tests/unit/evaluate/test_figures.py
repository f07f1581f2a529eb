from __future__ import annotations

import io
import itertools

import numpy as np
import pytest
from matplotlib.image import imread

from ergo_ray.evaluate import compare_plots, plots, science
from ergo_ray.evaluate.calibration import calibration_metrics
from ergo_ray.evaluate.metrics import evaluate_predictions
from ergo_ray.evaluate.ood import ood_scores
from ergo_ray.evaluate.report import Section, html_report, json_bytes
from ergo_ray.types import TARGETS


def _png_ok(fig) -> np.ndarray:
    png = plots.figure_png(fig, dpi=60)
    assert png[:8] == b"\x89PNG\r\n\x1a\n"
    img = imread(io.BytesIO(png))
    assert img.ndim == 3 and img.shape[0] > 50 and img.shape[1] > 50
    assert img[..., :3].std() > 0.01      # not a blank canvas
    return img


@pytest.fixture(scope="module")
def posterior_case():
    rng = np.random.default_rng(0)
    n, s = 300, 100
    truth = {"exsitu_frac": rng.uniform(0.05, 0.9, n), "lmm_lookback_gyr": rng.uniform(0.5, 10, n),
             "lmm_log_mass": rng.uniform(8, 11, n)}
    truth["lmm_lookback_gyr"][:60] = np.nan
    truth["lmm_log_mass"][:60] = np.nan
    samples = np.empty((n, s, 3))
    for j, t in enumerate(TARGETS):
        base = np.where(np.isfinite(truth[t]), truth[t], 15.0 if j == 1 else 6.0)
        samples[:, :, j] = base[:, None] + 0.1 * (j + 1) * rng.normal(size=(n, s))
    summary = {f"{t}_map": np.median(samples[:, :, j], axis=1) for j, t in enumerate(TARGETS)}
    summary.update({f"{t}_std": samples[:, :, j].std(axis=1) for j, t in enumerate(TARGETS)})
    summary["p_no_major_merger"] = np.r_[np.ones(60), np.zeros(n - 60)]
    for t in TARGETS[1:]:
        summary[f"{t}_map"][:60] = np.nan
    mass = rng.uniform(9, 12, n)
    return truth, samples, summary, mass


def test_validation_figures_render(posterior_case):
    truth, samples, summary, mass = posterior_case
    met = evaluate_predictions(summary, truth, mass, [9.0, 10.0, 11.0, 12.0])
    cal = calibration_metrics(samples, truth)
    for t in TARGETS:
        _png_ok(plots.map_vs_truth_figure(t, [("model", summary[f"{t}_map"], truth[t]),
                                              ("baseline", np.full(300, np.nan), truth[t])],
                                          [met["nmm"], None]))
    errs = {t: summary[f"{t}_map"] - truth[t] for t in TARGETS}
    _png_ok(plots.error_vs_std_figure(errs, {t: summary[f"{t}_std"] for t in TARGETS}))
    _png_ok(plots.coverage_figure({"model": {t: cal[t]["coverage"] for t in TARGETS}}))
    _png_ok(plots.pit_figure({"model": {t: cal[t]["pit"] for t in TARGETS}}))
    _png_ok(plots.mass_bin_figure({"model": met["mass_bins"]}))
    _png_ok(plots.nmm_confusion_figure({"model": met["nmm"]}))


def test_binned_percentiles():
    x = np.repeat([0.5, 1.5], 100)
    y = np.r_[np.arange(100.0), np.arange(100.0) + 1000]
    c, v, n = plots.binned_percentiles(x, y, [0, 1, 2, 3], (10, 50, 90))
    np.testing.assert_allclose(c, [0.5, 1.5, 2.5])
    assert n.tolist() == [100, 100, 0]
    assert v[0, 1] == pytest.approx(49.5) and v[1, 1] == pytest.approx(1049.5)
    assert np.isnan(v[2]).all()


def test_comparison_figures_render():
    rng = np.random.default_rng(1)
    reps = {"a": rng.normal(size=(200, 5)), "b": rng.normal(size=(200, 5)) + 1.0}
    res = ood_scores(reps, max_per_set=200)
    _png_ok(compare_plots.ood_histogram_figure(res.scores, res.names))
    emb = {"a": rng.normal(size=(150, 2)), "b": rng.normal(size=(150, 2)) + 2,
           "c": rng.normal(size=(3, 2))}     # too few for a KDE: drawn without contours
    _png_ok(compare_plots.umap_kde_figure(emb, "a"))
    _png_ok(compare_plots.umap_kde_figure(emb, None))


def test_physical_size_kpc_uses_the_tng_cosmology():
    from astropy.cosmology import FlatLambdaCDM, Planck15

    r = science.physical_size_kpc(np.array([10.0, 10.0, np.nan, 5.0]),
                                  np.array([0.1, 0.3, 0.2, -1.0]))
    tng = FlatLambdaCDM(H0=67.74, Om0=0.3089, Ob0=0.0486)
    expect = 10 * 0.168 * tng.kpc_proper_per_arcmin(0.1).value / 60
    planck15 = 10 * 0.168 * Planck15.kpc_proper_per_arcmin(0.1).value / 60
    assert r[0] == pytest.approx(expect, rel=1e-9)
    assert r[0] != pytest.approx(planck15, rel=1e-6)   # not the other Planck 2015 flavour
    assert r[0] == pytest.approx(expect) and 2.9 < r[0] < 3.3
    assert r[1] > r[0]
    assert np.isnan(r[2:]).all()


def test_exsitu_difference_at_fixed_mass_ignores_mass_distribution():
    rng = np.random.default_rng(2)
    edges = [9.0, 10.0, 11.0, 12.0]
    # Ex-situ rises with mass in both; the observed set is 0.05 lower at fixed mass and has
    # a very different mass distribution (mostly low mass).
    sim_m = rng.uniform(9, 12, 4000)
    obs_m = np.r_[rng.uniform(9, 10, 3000), rng.uniform(10, 12, 300)]
    f = lambda m: 0.1 + 0.2 * (m - 9)  # noqa: E731
    sim_v = f(sim_m) + 0.02 * rng.normal(size=sim_m.size)
    obs_v = f(obs_m) - 0.05 + 0.02 * rng.normal(size=obs_m.size)
    d = science.exsitu_difference_at_fixed_mass(obs_m, obs_v, sim_m, sim_v, edges)
    assert d["n_bins"] == 3
    assert d["mean_difference"] == pytest.approx(-0.05, abs=0.01)
    assert d["stderr"] < 0.01
    # A naive difference of means would be dominated by the mass mismatch.
    assert obs_v.mean() - sim_v.mean() < -0.15
    rows = science.mass_bin_ranges(sim_m, sim_v, edges)
    assert [r["n"] for r in rows] == [int(((sim_m >= a) & (sim_m < b)).sum())
                                      for a, b in itertools.pairwise(edges)]
    assert rows[0]["p10"] < rows[0]["median"] < rows[0]["p90"]


def test_science_figures_render():
    rng = np.random.default_rng(3)
    n, s = 400, 50
    mass = rng.uniform(9.5, 11.8, n)
    size = 10 ** (0.3 * (mass - 10) + 0.5 + 0.1 * rng.normal(size=n))
    ex = np.clip(0.1 + 0.2 * (mass - 9.5)[:, None] + 0.05 * rng.normal(size=(n, s)), 0, 1)
    sims = {"tng100 (truth)": science.mass_bin_ranges(mass, ex.mean(axis=1) + 0.05,
                                                      [9.5, 10.0, 10.5, 11.0, 11.5, 12.0])}
    _png_ok(science.exsitu_vs_mass_figure("hsc", mass, ex, [9.5, 10.0, 10.5, 11.0, 11.5, 12.0],
                                          sims))
    _png_ok(science.exsitu_vs_size_figure("hsc", size, ex, mass))
    _png_ok(science.size_mass_hexbin_figure(mass, size, ex.mean(axis=1), ex.std(axis=1),
                                            gridsize=10))
    # Degenerate inputs still give a (labelled) figure rather than an exception.
    _png_ok(science.size_mass_hexbin_figure(mass[:2], size[:2], ex[:2, 0], ex[:2, 1]))


def test_html_report_is_self_contained_and_json_strict():
    fig_png = plots.figure_png(plots.nmm_confusion_figure(
        {"m": {"confusion": [[5, 1], [2, 3]], "precision": 0.75, "recall": 0.6}}), dpi=40)
    page = html_report("Validation <x>", [Section("Accuracy", ["a < b"],
                                                  [(["target", "mae"], [["exsitu", 0.1234567],
                                                                        ["nan", float("nan")]])],
                                                  [("confusion", fig_png)])]).decode()
    assert "<title>Validation &lt;x&gt;</title>" in page
    assert "data:image/png;base64," in page and "<td>0.1235</td>" in page
    assert "src=\"http" not in page
    js = json_bytes({"a": float("nan"), "b": np.float32(1.5), "c": (np.int64(2),)})
    assert js.decode().replace(" ", "").replace("\n", "") == '{"a":null,"b":1.5,"c":[2]}'


def test_degenerate_inputs_still_render():
    nan = np.full(10, np.nan)
    _png_ok(plots.map_vs_truth_figure("lmm_log_mass", [("model", nan, nan)]))
    empty_cov = {"levels": [0.5], "coverage": [float("nan")], "stderr": [0.1], "n": 0}
    _png_ok(plots.coverage_figure({"model": {t: empty_cov for t in TARGETS}}))
    _png_ok(plots.pit_figure({"model": {t: {"n": 0} for t in TARGETS}}))
    _png_ok(plots.mass_bin_figure({"model": {}}))
    _png_ok(plots.error_vs_std_figure({t: nan for t in TARGETS}, {t: nan for t in TARGETS}))
    rng = np.random.default_rng(5)
    _png_ok(compare_plots.umap_kde_figure(
        {"a": rng.normal(size=(3, 2)), "b": rng.normal(size=(4, 2))}, None))
