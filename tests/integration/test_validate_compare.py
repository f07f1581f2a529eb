"""``ergo-ray validate`` and ``ergo-ray compare`` end to end on the loopback S3 endpoint.

The inputs are made by the real stages with the ``ci`` preset: the shared tiny demo
(``conftest.ci_demo``) runs ``mock`` (the hsc truth kept apart), ``prepare``,
``train-nnclr`` and ``train-cinn --baseline`` on the loopback S3 endpoint.
The model is tiny and barely trained: these tests check that every output exists, is
well formed and holds real content (the science is checked by the known-shift run on the
``local`` preset, not here).
"""

from __future__ import annotations

import io
import json

import numpy as np
import pyarrow.parquet as pq
import pytest
from matplotlib.image import imread

from ergo_ray.cli.main import main
from ergo_ray.evaluate.inputs import read_set
from ergo_ray.io import storage
from ergo_ray.types import TARGETS

pytestmark = [pytest.mark.ray, pytest.mark.s3, pytest.mark.slow]

DOMAINS = ("tng100", "tng50", "hsc")

VALIDATE_FILES = ("metrics.json", "summary.json", "report.html", "mass_bins.csv",
                  "predictions.parquet", "coverage.png", "pit.png", "error_vs_std.png",
                  "mass_bins.png", "nmm_confusion.png",
                  *(f"map_vs_truth_{t}.png" for t in TARGETS))
COMPARE_FILES = ("compare.json", "summary.json", "report.html", "ood_table.csv", "ood_table.md",
                 "umap.parquet", "ood_histograms.png", "umap_kde.png", "exsitu_vs_mass.png",
                 "exsitu_vs_size.png", "size_mass_hexbin.png")


@pytest.fixture(scope="module")
def pipeline(ci_demo):
    """The shared tiny demo's prepared sets and model (mock → prepare → train-nnclr →
    train-cinn --baseline on the loopback S3 endpoint); this module writes under ``vc/``."""
    return {**ci_demo, "out": storage.join(ci_demo["root"], "vc")}


def _files(url: str, st_cfg) -> dict[str, bytes]:
    return {f.rsplit("/", 1)[-1]: storage.read_bytes(f, st_cfg)
            for f in storage.list_files(url, st_cfg)}


def _check_pngs(files: dict[str, bytes]) -> int:
    n = 0
    for name, data in files.items():
        if not name.endswith(".png"):
            continue
        assert len(data) > 1000, name
        img = imread(io.BytesIO(data))
        assert img.ndim == 3 and min(img.shape[:2]) > 100, name
        assert img[..., :3].std() > 0.01, f"{name} is blank"
        n += 1
    return n


def test_validate_on_simulations(pipeline):
    root, common, st_cfg = pipeline["root"], pipeline["common"], pipeline["storage"]
    out = f"{pipeline['out']}/validate/tng"
    assert main(["validate", "--model", f"{root}/model", "--in", f"{root}/prepared/tng100",
                 f"{root}/prepared/tng50", "--split", "all", "--samples", "40",
                 "--out", out, *common]) == 0
    files = _files(out, st_cfg)
    for name in VALIDATE_FILES:
        assert name in files, f"validate did not write {name}"
    assert _check_pngs(files) == sum(n.endswith(".png") for n in VALIDATE_FILES)
    m = json.loads(files["metrics.json"])
    prepared = read_set([f"{root}/prepared/tng100", f"{root}/prepared/tng50"], st_cfg,
                        need_pixels=False)
    assert 0 < m["n_objects"] == len(prepared) - m["n_skipped"] <= len(prepared)
    assert set(m["domains"]) == {"tng100", "tng50"}
    for t in TARGETS:
        assert t in m["bias"]
        cov = m["model"]["calibration"][t]["coverage"]
        assert len(cov["levels"]) == 10
        # nested central intervals: coverage cannot fall as the level rises
        assert cov["n"] == 0 or np.all(np.diff(cov["coverage"]) >= 0)
    # the headline accuracy, recomputed from the per-galaxy predictions written beside it
    pred = pq.read_table(io.BytesIO(files["predictions.parquet"]))
    fx_map = pred["exsitu_frac_map"].to_numpy()
    fx_true = pred["true_exsitu_frac"].to_numpy()
    ok = np.isfinite(fx_map) & np.isfinite(fx_true)
    ex = m["model"]["targets"]["exsitu_frac"]
    assert ex["n"] == ok.sum() > 0
    assert ex["frac_within_0.1"] == pytest.approx(
        np.mean(np.abs(fx_map[ok] - fx_true[ok]) <= 0.1))
    assert np.isfinite(m["bias"]["exsitu_frac"])
    assert m["baseline"] is not None and "exsitu_frac" in m["baseline"]["targets"]
    assert m["model"]["latent_normality"]["n"] > 1
    assert sum(r["n"] for r in m["model"]["mass_bins"]["exsitu_frac"]) <= m["n_objects"]
    assert sum(map(sum, m["model"]["nmm"]["confusion"])) == m["model"]["nmm"]["n"]
    s = json.loads(files["summary.json"])
    assert set(s["bias"]) == set(TARGETS) and "baseline" in s["bias"]["exsitu_frac"]
    page = files["report.html"].decode()
    assert page.count("data:image/png;base64,") == sum(n.endswith(".png") for n in files)
    assert "<script" not in page and "src=\"http" not in page
    header = files["mass_bins.csv"].decode().splitlines()
    assert header[0] == "estimator,target,lo,hi,n,mae,rmse,bias" and len(header) > 1
    assert storage.exists(f"{out}/_meta/config.yaml", st_cfg)


def test_validate_survey_with_separate_truth(pipeline):
    root, common, st_cfg = pipeline["root"], pipeline["common"], pipeline["storage"]
    out = f"{pipeline['out']}/validate/hsc"
    # The prepared survey has no truth: validating it without --truth is a usage error.
    assert main(["validate", "--model", f"{root}/model", "--in", f"{root}/prepared/hsc",
                 "--split", "all", "--out", out, *common]) == 2
    assert main(["validate", "--model", f"{root}/model", "--in", f"{root}/prepared/hsc",
                 "--truth", f"{root}/mock/hsc/truth", "--split", "all", "--samples", "40",
                 "--out", out, *common]) == 0
    m = json.loads(storage.read_bytes(f"{out}/metrics.json", st_cfg))
    assert m["domains"] == {"hsc": m["n_objects"]} and m["n_objects"] > 0
    assert all(np.isfinite(m["bias"][t]) or t != "exsitu_frac" for t in TARGETS)


def test_compare_sets(pipeline):
    root, common, st_cfg = pipeline["root"], pipeline["common"], pipeline["storage"]
    out = f"{pipeline['out']}/compare"
    sets = [a for d in DOMAINS for a in ("--set", f"{d}={root}/prepared/{d}")]
    assert main(["compare", "--model", f"{root}/model", *sets, "--observed", "hsc",
                 "--ood-max", "100", "--samples", "40", "--out", out, *common]) == 0
    files = _files(out, st_cfg)
    for name in COMPARE_FILES:
        assert name in files, f"compare did not write {name}"
    assert _check_pngs(files) == sum(n.endswith(".png") for n in COMPARE_FILES)
    c = json.loads(files["compare.json"])
    table = c["ood"]["table"]
    assert set(table) == set(DOMAINS) and all(set(table[a]) == set(DOMAINS) for a in DOMAINS)
    for d in DOMAINS:      # the diagonal is ~5 % by construction
        assert table[d][d] <= 0.2
    assert {r["set"] for r in c["ranking"]} == {"tng100", "tng50"}
    assert [r["rank"] for r in c["ranking"]] == [1, 2]
    assert c["ranking"][0]["mean"] <= c["ranking"][1]["mean"]
    diff = c["science"]["exsitu_difference"]
    assert set(diff) == {"tng100", "tng50"}
    assert "truth" in diff["tng100"] and "mean_difference" in diff["tng100"]["inferred"]
    assert c["science"]["ood_cut"]["n_after"] <= c["science"]["ood_cut"]["n_before"]
    s = json.loads(files["summary.json"])
    assert "tng100" in s["exsitu_difference_observed_minus_sim"]
    assert s["ood_fraction_above_1"] == table
    csv = files["ood_table.csv"].decode().splitlines()
    assert csv[0] == "query,reference,label,fraction_above_1,median_score,n"
    assert len(csv) == 1 + len(DOMAINS) ** 2
    assert files["ood_table.md"].decode().startswith("| query \\ reference |")


def test_compare_usage_errors(pipeline, capsys):
    root, common = pipeline["root"], pipeline["common"]
    out = f"{pipeline['out']}/compare-bad"
    one = ["--set", f"hsc={root}/prepared/hsc"]
    assert main(["compare", "--model", f"{root}/model", *one, "--out", out, *common]) == 2
    assert "at least two" in capsys.readouterr().err
    two = [*one, "--set", f"tng100={root}/prepared/tng100"]
    assert main(["compare", "--model", f"{root}/model", *two, "--observed", "eagle",
                 "--out", out, *common]) == 2
    assert "--observed 'eagle'" in capsys.readouterr().err
    assert main(["compare", "--model", f"{root}/model", *two, "--samples", "0",
                 "--out", out, *common]) == 2
    assert "--samples must be >= 2, got 0" in capsys.readouterr().err
