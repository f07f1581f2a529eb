from __future__ import annotations

import pickle
from pathlib import Path

import numpy as np
import pytest

from ergo_ray.errors import BadObjectError, InputError
from ergo_ray.io import catalog as C
from ergo_ray.io import fits_hsc, fits_tng, layouts
from ergo_ray.io import sources as S
from ergo_ray.io.shards import write_raw_shard

from .helpers import blob_cutout

N = 5


def _row(k):
    return {
        "object_id": f"d-1-{k:07d}-p0",
        "root_id": f"d-1-{k:07d}",
        "domain": "d",
        "projection": 0,
        "redshift": 0.1 + 0.02 * k,
        "log_mstar": 10.0,
    }


def _cut(k):
    return blob_cutout(size=16, seed=k, noise=0.02, source=f"obj{k}")


def _write(fmt, root: Path, with_catalog=True):
    rows = []
    for k in range(N):
        row = _row(k)
        if fmt == "hsc-fits":
            lineno = 2 + k
            fits_hsc.write_hsc_cutout(
                _cut(k), str(root / "cutouts"), lineno=lineno, tract=9000 + k
            )
            row.update(
                cutout_lineno=lineno,
                file=f"cutouts/{fits_hsc.hsc_cutout_name(lineno, 'i', 9000 + k)}",
            )
        elif fmt == "tng-fits":
            name = fits_tng.tng_mock_name(91, k, 0)
            fits_tng.write_tng_mock(
                _cut(k), str(root / "images" / name), redshift=row["redshift"]
            )
            row["file"] = f"images/{name}"
        rows.append(row)
    if fmt == "shards":
        write_raw_shard(
            str(root / "shards" / "part-00000-000.parquet"),
            rows[:3],
            [_cut(k) for k in range(3)],
        )
        write_raw_shard(
            str(root / "shards" / "part-00001-000.parquet"),
            rows[3:],
            [_cut(k) for k in range(3, N)],
        )
    if with_catalog:
        C.write_part(
            str(root / "catalog" / "part-00000.parquet"), C.rows_to_table(rows)
        )
    return rows


@pytest.mark.parametrize("fmt", layouts.FORMATS)
def test_every_format_reads_back_with_its_rows(tmp_path, fmt):
    _write(fmt, tmp_path)
    units = S.discover(str(tmp_path), max_objects=2)
    assert {u["kind"] for u in units} == {fmt}
    assert pickle.loads(pickle.dumps(units)) == units
    if fmt != "shards":
        assert [len(u["items"]) for u in units] == [2, 2, 1]
    got = {row["object_id"]: (row, cut) for u in units for row, cut in S.read_unit(u)}
    assert sorted(got) == [_row(k)["object_id"] for k in range(N)]
    for k in range(N):
        row, cut = got[_row(k)["object_id"]]
        assert row["redshift"] == pytest.approx(_row(k)["redshift"])
        np.testing.assert_array_equal(cut.image, _cut(k).image)
        np.testing.assert_array_equal(cut.mask, _cut(k).mask)


@pytest.mark.parametrize("fmt", ["hsc-fits", "tng-fits"])
def test_fits_folders_without_catalogue_get_rows_from_names(tmp_path, fmt):
    _write(fmt, tmp_path, with_catalog=False)
    out = list(S.iter_survey(str(tmp_path)))
    assert len(out) == N and all(not isinstance(c, BadObjectError) for _, c in out)
    rows = [r for r, _ in out]
    if fmt == "hsc-fits":
        assert [r["cutout_lineno"] for r in rows] == [2, 3, 4, 5, 6]
        assert rows[0]["tract"] == 9000 and rows[0]["object_id"] == "hsc-line-2"
    else:
        assert rows[1]["object_id"] == "shalo_091-1_v0_HSC_GRI"
        assert rows[1]["redshift"] == pytest.approx(0.12)  # from the FITS header
        assert rows[1]["snap"] == 91 and rows[1]["projection"] == 0


def test_corrupt_file_does_not_stop_the_read(tmp_path):
    _write("hsc-fits", tmp_path)
    bad = tmp_path / "cutouts" / fits_hsc.hsc_cutout_name(4, "r", 9002)
    bad.write_bytes(bad.read_bytes()[:5000])
    (tmp_path / "cutouts" / fits_hsc.hsc_cutout_name(5, "g", 9003)).write_bytes(
        b"<html>oops</html>"
    )
    (tmp_path / "cutouts" / fits_hsc.hsc_cutout_name(6, "i", 9004)).unlink()
    out = list(S.iter_survey(str(tmp_path)))
    ok = [r["object_id"] for r, c in out if not isinstance(c, BadObjectError)]
    errs = {r["object_id"]: c for r, c in out if isinstance(c, BadObjectError)}
    assert ok == [_row(0)["object_id"], _row(1)["object_id"]]
    assert errs[_row(2)["object_id"]].reason == "truncated"
    assert "4-cutout-HSC-R-9002-pdr3_wide.fits" in str(errs[_row(2)["object_id"]])
    assert errs[_row(3)["object_id"]].reason == "not_fits"
    assert "5-cutout-HSC-G-9003-pdr3_wide.fits: not a FITS file" in str(
        errs[_row(3)["object_id"]]
    )
    miss = errs[_row(4)["object_id"]]
    assert miss.reason == "missing_band" and miss.object_id == _row(4)["object_id"]
    assert (
        "missing band file(s) i (expected 6-cutout-HSC-I-9004-pdr3_wide.fits)"
        in str(miss)
    )


def test_bad_tng_file_and_bad_shard_are_errors_not_aborts(tmp_path):
    _write("tng-fits", tmp_path / "t")
    (tmp_path / "t" / "images" / fits_tng.tng_mock_name(91, 2, 0)).write_bytes(
        b"SIMPLE  = T" * 10
    )
    (tmp_path / "t" / "images" / fits_tng.tng_mock_name(91, 4, 0)).unlink()
    out = list(S.iter_survey(str(tmp_path / "t")))
    reasons = [c.reason if isinstance(c, BadObjectError) else "ok" for _, c in out]
    assert reasons == ["ok", "ok", "truncated", "ok", "missing_file"]
    assert "shalo_091-4_v0_HSC_GRI.fits: no such file" in str(out[4][1])
    _write("shards", tmp_path / "s")
    (tmp_path / "s" / "shards" / "part-00000-000.parquet").write_bytes(b"not parquet")
    out = list(S.iter_survey(str(tmp_path / "s")))
    assert [r["object_id"] for r, c in out if not isinstance(c, BadObjectError)] == [
        _row(3)["object_id"],
        _row(4)["object_id"],
    ]
    ((row, err),) = [(r, c) for r, c in out if isinstance(c, BadObjectError)]
    assert row == {"object_id": None, "file": "shards/part-00000-000.parquet"}
    assert "part-00000-000.parquet: not a readable Parquet shard" in str(err)


def test_hsc_units_group_up_to_64_objects_and_group_band_files(tmp_path):
    urls = fits_hsc.write_hsc_cutout(blob_cutout(size=8), str(tmp_path), lineno=2, tract=1)
    for lineno in range(3, 2 + 70):  # same bytes under the other objects' names
        for band, url in zip("gri", urls, strict=True):
            (tmp_path / fits_hsc.hsc_cutout_name(lineno, band, 1)).write_bytes(
                Path(url).read_bytes()
            )
    units = S.discover(str(tmp_path))
    assert [len(u["items"]) for u in units] == [64, 6]
    item = units[0]["items"][0]
    assert item["lineno"] == 2 and sorted(item["files"]) == ["g", "i", "r"]
    assert item["files"]["r"].endswith("2-cutout-HSC-R-1-pdr3_wide.fits")


def test_discover_errors(tmp_path):
    (tmp_path / "notes.txt").write_text("x")
    with pytest.raises(InputError, match="no survey data found"):
        S.discover(str(tmp_path))
    one = tmp_path / "one.parquet"
    write_raw_shard(str(one), [_row(0)], [_cut(0)])
    (unit,) = S.discover(str(one))
    assert [r["object_id"] for r, _ in S.read_unit(unit)] == [_row(0)["object_id"]]
