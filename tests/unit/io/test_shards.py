from __future__ import annotations

import numpy as np
import pyarrow as pa
import pyarrow.parquet as pq
import pytest

from ergo_ray.errors import BadObjectError, InputError
from ergo_ray.io.catalog import read_metadata
from ergo_ray.io.cutout import Cutout
from ergo_ray.io.shards import (
    cutouts_to_table,
    iter_raw_shard,
    read_raw_shard,
    write_raw_shard,
)

from .helpers import blob_cutout


def _rows(n):
    return [
        {
            "object_id": f"t-1-{k:07d}-p0",
            "root_id": f"t-1-{k:07d}",
            "domain": "tng100",
            "projection": 0,
            "redshift": 0.1 + 0.01 * k,
            "log_mstar": 10.0 + k,
            "true_exsitu_frac": 0.1 * k,
            "true_lmm_lookback_gyr": float("nan"),
            "true_lmm_log_mass": 9.0,
            "struct_re_arcsec": 1.5 * k,
            "i_mag": np.float64(19.5),
        }
        for k in range(n)
    ]


def test_round_trip_is_exact_and_streams_row_groups(tmp_path):
    cuts = [blob_cutout(size=24, seed=k, noise=0.1) for k in range(70)]
    cuts[3] = Cutout(cuts[3].image, None, None, "no planes")
    url = str(tmp_path / "shards" / "part-00000-000.parquet")
    assert write_raw_shard(url, _rows(70), cuts) == 70
    rows, back = read_raw_shard(url)
    assert [r["object_id"] for r in rows] == [r["object_id"] for r in _rows(70)]
    for a, b in zip(back, cuts, strict=True):
        np.testing.assert_array_equal(a.image, b.image)
        assert a.image.dtype == np.float32 and a.image.shape == (3, 24, 24)
        if b.mask is None:
            assert a.mask is None and a.variance is None
        else:
            np.testing.assert_array_equal(a.mask, b.mask)
            np.testing.assert_array_equal(a.variance, b.variance)
    assert rows[5]["struct_re_arcsec"] == 7.5 and np.isnan(
        rows[0]["true_lmm_lookback_gyr"]
    )
    meta = read_metadata(url)
    assert meta["ergo_ray.kind"] == "raw-shard"
    assert meta["ergo_ray.image_shape"] == "3,24,24"
    assert meta["ergo_ray.schema"] == "1" and meta["ergo_ray.version"]
    pf = pq.ParquetFile(url)
    assert pf.num_row_groups == 2  # 64-row groups: readers stream the file
    schema = pf.schema_arrow
    assert schema.field("image").type == pa.list_(pa.float32(), 3 * 24 * 24)
    assert schema.field("mask").type == pa.list_(pa.int32(), 3 * 24 * 24)
    assert schema.field("projection").type == pa.int32()
    assert schema.names[:9] == [
        "object_id",
        "root_id",
        "domain",
        "projection",
        "redshift",
        "log_mstar",
        "true_exsitu_frac",
        "true_lmm_lookback_gyr",
        "true_lmm_log_mass",
    ]


def test_truth_can_be_dropped():
    table = cutouts_to_table(
        _rows(2),
        [blob_cutout(size=8)] * 2,
        drop=("true_exsitu_frac", "true_lmm_lookback_gyr", "true_lmm_log_mass"),
    )
    assert not [c for c in table.column_names if c.startswith("true_")]
    assert table.column("height").to_pylist() == [8, 8]


def test_mixed_shapes_are_refused():
    with pytest.raises(InputError, match="share one"):
        cutouts_to_table(_rows(2), [blob_cutout(size=8), blob_cutout(size=10)])


def test_bad_rows_are_yielded_as_errors_and_the_rest_read(tmp_path):
    cuts = [blob_cutout(size=16, seed=k) for k in range(4)]
    cuts[1].image[2] = np.nan
    url = str(tmp_path / "part.parquet")
    write_raw_shard(url, _rows(4), cuts)
    out = list(iter_raw_shard(url))
    assert [isinstance(c, BadObjectError) for _, c in out] == [
        False,
        True,
        False,
        False,
    ]
    err = out[1][1]
    assert err.reason == "all_nan" and err.object_id == "t-1-0000001-p0"
    assert "part.parquet" in str(err) and "band i" in str(err)
    np.testing.assert_array_equal(out[3][1].image, cuts[3].image)
    with pytest.raises(BadObjectError):
        read_raw_shard(url)


def test_wrong_shape_rows(tmp_path):
    table = cutouts_to_table(_rows(2), [blob_cutout(size=8)] * 2)
    table = table.set_column(
        table.column_names.index("height"), "height", pa.array([9, 9], pa.int32())
    )
    url = tmp_path / "bad.parquet"
    pq.write_table(table, url)
    out = list(iter_raw_shard(str(url)))
    assert all(
        isinstance(c, BadObjectError) and c.reason == "bad_shape" for _, c in out
    )
    assert "bad.parquet" in str(out[0][1]) and "height=9" in str(out[0][1])


def test_not_a_shard(tmp_path):
    (tmp_path / "x.parquet").write_bytes(b"PAR1 garbage")
    with pytest.raises(InputError, match=r"x\.parquet: not a readable Parquet shard"):
        list(iter_raw_shard(str(tmp_path / "x.parquet")))
    pq.write_table(pa.table({"object_id": ["a"]}), tmp_path / "cat.parquet")
    with pytest.raises(
        InputError, match=r"not a raw shard \(missing column\(s\) image"
    ):
        list(iter_raw_shard(str(tmp_path / "cat.parquet")))
