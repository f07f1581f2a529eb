"""The main job end to end on a tiny configuration, and its report in a headless browser."""

from __future__ import annotations

import json
import math
import shutil
import subprocess

import pytest

from ergo_ray.cli.main import main
from ergo_ray.demo.plan import DOMAIN_WEIGHTS

pytestmark = [pytest.mark.ray, pytest.mark.slow]


@pytest.fixture(scope="module")
def demo_out(ray_session, tmp_path_factory):
    out = tmp_path_factory.mktemp("demo") / "out"
    rc = main(["demo", "--out", str(out), "--preset", "ci", "--n", "32"])
    assert rc == 0
    return out


def test_every_artefact_exists(demo_out):
    for dom in DOMAIN_WEIGHTS:
        assert list((demo_out / "mock" / dom).rglob("*.parquet")), dom
        assert list((demo_out / "prepared" / dom / "shards").glob("*.parquet")), dom
    assert (demo_out / "mock" / "hsc" / "truth").is_dir()
    assert (demo_out / "stamps" / "stamps.png").stat().st_size > 10_000
    assert (demo_out / "model" / "manifest.json").exists()
    assert list((demo_out / "catalog").rglob("*.parquet"))
    for name in ("tng", "eagle", "hsc"):
        assert (demo_out / "validate" / name / "metrics.json").exists()
        assert list((demo_out / "validate" / name).glob("*.png"))
    assert (demo_out / "compare" / "summary.json").exists()
    report = (demo_out / "report.html").read_text()
    assert "ergo_ray demo report" in report and report.count("data:image/png;base64") >= 10


def test_every_summary_figure_is_finite(demo_out):
    summary = json.loads((demo_out / "summary.json").read_text())
    numbers = {k: v for k, v in summary.items() if k not in ("stages", "ood_ranking", "farthest_from_hsc")}
    # At this tiny size the test split can hold no merger galaxy with log M* > 9.5, so the two
    # merger-only figures may be undefined (null); every other figure must be finite.
    maybe_empty = {"lmm_mass_within_0.5dex_model", "lmm_mass_within_0.5dex_baseline",
                   "lmm_lookback_mae_model", "lmm_lookback_mae_baseline"}
    missing = [k for k, v in numbers.items() if k not in maybe_empty
               and (not isinstance(v, (int, float)) or not math.isfinite(v))]
    assert maybe_empty <= set(summary)
    assert not missing, f"non-finite summary figures: {missing}"
    assert summary["farthest_from_hsc"] in DOMAIN_WEIGHTS
    assert len(summary["stages"]) == 19 and all(v >= 0 for v in summary["stages"].values())


def test_rerun_continues_from_finished_stages(demo_out):
    before = (demo_out / "model" / "manifest.json").read_bytes()
    rc = main(["demo", "--out", str(demo_out), "--preset", "ci", "--n", "32"])
    assert rc == 0
    assert (demo_out / "model" / "manifest.json").read_bytes() == before


@pytest.mark.skipif(shutil.which("chromium") is None, reason="chromium is not installed (.ci/run installs it)")
def test_report_renders_in_headless_chromium(demo_out, tmp_path):
    from PIL import Image

    shot = tmp_path / "report.png"
    subprocess.run(
        ["chromium", "--headless", "--no-sandbox", "--disable-gpu", "--disable-quic", "--no-first-run",
         "--disable-background-networking", "--disable-component-update", "--disable-sync",
         f"--user-data-dir={tmp_path / 'profile'}", "--window-size=1280,2400",
         f"--screenshot={shot}", (demo_out / "report.html").as_uri()],
        check=True, timeout=120, capture_output=True)
    img = Image.open(shot).convert("L")
    lo, hi = img.getextrema()
    assert hi - lo > 100, "screenshot is blank"
    hist = img.histogram()
    assert max(hist) / sum(hist) < 0.97, "screenshot is almost a single colour"
