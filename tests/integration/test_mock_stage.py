"""``ergo-ray mock`` end to end on the session's local Ray: the three formats and the hsc truth."""

from __future__ import annotations

import json
import logging
from pathlib import Path

import numpy as np
import pyarrow.parquet as pq
import pytest

from ergo_ray.cli.main import main
from ergo_ray.errors import BadObjectError
from ergo_ray.io import sources
from ergo_ray.io.catalog import read_catalog
from ergo_ray.io.fits_hsc import parse_hsc_cutout_name
from ergo_ray.io.fits_tng import parse_tng_mock_name
from ergo_ray.io.schemas import CATALOG_COLUMNS, TRUTH_COLUMNS
from ergo_ray.mock import mock_object

pytestmark = pytest.mark.ray

N, P, SEED, PX = 5, 2, 4, 32


def _mock(out, *extra, domain="tng100", fmt="shards", n=N):
    return main(["mock", "--domain", domain, "--n", str(n), "--projections", str(P),
                 "--seed", str(SEED), "--format", fmt, "--out", str(out), "--preset", "ci",
                 "--stamp-px", str(PX), "--set", "mock.galaxies_per_task=2", *extra])


def _read(out):
    got = {}
    for row, cut in sources.iter_survey(str(out)):
        assert not isinstance(cut, BadObjectError), cut
        got[row["object_id"]] = (row, cut)
    return got


@pytest.fixture(scope="module")
def three_formats(ray_session, tmp_path_factory):
    root = tmp_path_factory.mktemp("mock")
    for fmt in ("shards", "hsc-fits", "tng-fits"):
        assert _mock(root / fmt, fmt=fmt) == 0
    return root


def test_formats_hold_identical_pixels_and_rows(three_formats):
    read = {fmt: _read(three_formats / fmt) for fmt in ("shards", "hsc-fits", "tng-fits")}
    ids = sorted(read["shards"])
    assert len(ids) == N * P and ids[0] == f"tng100-{SEED}-0000000-p0"
    for fmt in ("hsc-fits", "tng-fits"):
        assert sorted(read[fmt]) == ids
        for oid in ids:
            a, b = read["shards"][oid][1], read[fmt][oid][1]
            np.testing.assert_array_equal(a.image, b.image, err_msg=f"{fmt} {oid}")
            np.testing.assert_array_equal(a.mask, b.mask)
            np.testing.assert_array_equal(a.variance, b.variance)
            assert read[fmt][oid][0]["redshift"] == read["shards"][oid][0]["redshift"]
    # the same pixels as rendering the object directly: deterministic, whatever the task
    row, cut = mock_object("tng100", SEED, 3, 1, PX, "balanced")
    _, back = read["tng-fits"][row["object_id"]]
    np.testing.assert_array_equal(back.image, cut.image)
    assert back.image.dtype == np.float32 and back.image.shape == (3, PX, PX)


def test_catalogue_layout(three_formats):
    for fmt in ("shards", "hsc-fits", "tng-fits"):
        out = three_formats / fmt
        cat = read_catalog(str(out))
        assert list(cat.column_names[: len(CATALOG_COLUMNS)]) == list(CATALOG_COLUMNS)
        for col in ("i_mag", "ra", "dec", "file"):
            assert col in cat.column_names
        assert any(c.startswith("struct_") for c in cat.column_names)
        files = cat.column("file").to_pylist()
        assert all((out / f).is_file() for f in files), fmt
        meta = pq.read_schema(out / "catalog" / "part-00000.parquet").metadata
        assert meta[b"ergo_ray.kind"] == b"catalog"
        # one catalogue part per task of 2 galaxies
        assert len(list((out / "catalog").glob("part-*.parquet"))) == 3
        assert (out / "_meta" / "config.yaml").is_file()
        info = json.loads((out / "_meta" / "versions.json").read_text())
        assert info["stage"] == "mock" and "--format" in info["argv"]
    hsc = read_catalog(str(three_formats / "hsc-fits")).to_pylist()
    assert sorted(r["cutout_lineno"] for r in hsc) == list(range(2, 2 + N * P))
    for r in hsc:
        p = parse_hsc_cutout_name(r["file"])
        assert (p.lineno, p.band, p.tract) == (r["cutout_lineno"], "i", r["tract"])
    tng = read_catalog(str(three_formats / "tng-fits")).to_pylist()
    for r in tng:
        p = parse_tng_mock_name(r["file"])
        assert (p.snap, p.subhalo, p.projection) == (r["snap"], r["subhalo"], r["projection"])
        assert 72 <= p.snap <= 91


def test_hsc_domain_truth_goes_to_a_separate_table(ray_session, tmp_path):
    out = tmp_path / "hsc"
    assert _mock(out, domain="hsc", fmt="shards", n=3) == 0
    cat = read_catalog(str(out))
    assert not [c for c in cat.column_names if c.startswith("true_")]
    shard_cols = pq.read_schema(next((out / "shards").glob("*.parquet"))).names
    assert not [c for c in shard_cols if c.startswith("true_")]
    truth = read_catalog(str(out), sub="truth", required=("object_id", *TRUTH_COLUMNS))
    truth = {r["object_id"]: r for r in truth.to_pylist()}
    assert sorted(truth) == sorted(cat.column("object_id").to_pylist())
    row, _ = mock_object("hsc", SEED, 2, 1, PX, "balanced")
    for col in TRUTH_COLUMNS:
        np.testing.assert_equal(truth[row["object_id"]][col], row[col])


def test_rerun_resumes_refuses_a_different_mock_and_overwrites(ray_session, tmp_path, caplog):
    out = tmp_path / "m"
    caplog.set_level(logging.INFO, logger="ergo_ray")
    assert _mock(out, n=2) == 0
    assert "mock: wrote 4 objects (2 galaxies x 2 projections" in caplog.text
    assert "1/1 parts" in caplog.text
    before = (out / "catalog" / "part-00000.parquet").stat().st_mtime_ns
    caplog.clear()
    assert _mock(out, n=2) == 0
    assert "1 parts resumed" in caplog.text
    assert (out / "catalog" / "part-00000.parquet").stat().st_mtime_ns == before
    assert _mock(out, n=3) == 2  # a different mock in the same folder: refused
    assert _mock(out, "--overwrite", n=3) == 0
    assert len(_read(out)) == 3 * P


def test_bad_usage_exits_2(ray_session, tmp_path, capsys):
    assert _mock(tmp_path / "x", "--projections", "5") == 2
    assert "--projections must be 1..4, got 5" in capsys.readouterr().err
    assert _mock(tmp_path / "x", domain="illustris") == 2
    assert _mock(tmp_path / "x", "--set", "mock.rows_per_fil=3") == 2
    assert not Path(tmp_path / "x").exists()
