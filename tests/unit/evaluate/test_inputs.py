from __future__ import annotations

import numpy as np
import pyarrow as pa
import pyarrow.parquet as pq
import pytest

from ergo_ray.errors import CatalogSchemaError, InputError, StorageError
from ergo_ray.evaluate.inputs import join_truth, read_set, read_truth

S = 6


def _shard(path, ids, splits, with_truth=True, rep=False):
    n = len(ids)
    cols = {"object_id": ids, "root_id": [i[:-3] for i in ids], "domain": ["tng100"] * n,
            "redshift": np.linspace(0.1, 0.3, n), "log_mstar": np.linspace(9, 11, n),
            "split": splits}
    if with_truth:
        cols["true_exsitu_frac"] = np.linspace(0, 1, n)
        cols["true_lmm_lookback_gyr"] = np.full(n, 2.0)
        cols["true_lmm_log_mass"] = np.full(n, 10.0)
    t = pa.table(cols)
    if rep:
        vals = np.repeat(np.arange(n, dtype=np.float32), 4)
        t = t.append_column("representation", pa.FixedSizeListArray.from_arrays(pa.array(vals), 4))
    else:
        # image k is filled with its global number so row order can be checked
        num = [int(i.split("-")[2]) for i in ids]
        img = np.repeat(np.array(num, np.uint8), 3 * S * S)
        t = t.append_column("image", pa.FixedSizeListArray.from_arrays(pa.array(img), 3 * S * S))
        t = t.replace_schema_metadata({b"ergo_ray.image_shape": f"3,{S},{S}".encode()})
    path.parent.mkdir(parents=True, exist_ok=True)
    pq.write_table(t, path)


def _ids(a, b):
    return [f"tng100-1-{i:07d}-p0" for i in range(a, b)]


@pytest.fixture
def prepared(tmp_path):
    root = tmp_path / "prep"
    _shard(root / "shards" / "part-0.parquet", _ids(0, 6), ["train", "test"] * 3)
    _shard(root / "shards" / "part-1.parquet", _ids(6, 12), ["test"] * 6)
    return root


def test_read_set_split_order_and_pixels(prepared):
    es = read_set(str(prepared), split="test")
    assert len(es) == 9
    assert list(es.columns["object_id"][:3]) == [_ids(0, 6)[i] for i in (1, 3, 5)]
    assert es.images.shape == (9, 3, S, S) and es.images.dtype == np.uint8
    got = es.images[:, 0, 0, 0].tolist()
    assert got == [int(o.split("-")[2]) for o in es.columns["object_id"]]
    assert es.column("true_exsitu_frac").shape == (9,)
    assert np.isnan(es.column("r90_px")).all()


def test_read_set_limit_is_seeded_and_consistent(prepared):
    a = read_set(str(prepared), split="all", limit=5, seed=3)
    b = read_set(str(prepared), split="all", limit=5, seed=3)
    assert len(a) == 5 and list(a.columns["object_id"]) == list(b.columns["object_id"])
    nums = [int(o.split("-")[2]) for o in a.columns["object_id"]]
    assert a.images[:, 1, 2, 3].tolist() == nums
    meta = read_set(str(prepared), need_pixels=False)
    assert meta.images is None and len(meta) == 12


def test_read_set_errors(prepared, tmp_path):
    with pytest.raises(InputError, match="no rows in split 'val'"):
        read_set(str(prepared), split="val")
    with pytest.raises(StorageError, match="no such file or folder"):
        read_set(str(tmp_path / "missing"))
    (tmp_path / "empty").mkdir()
    with pytest.raises(InputError, match="no Parquet files"):
        read_set(str(tmp_path / "empty"))
    bad = tmp_path / "bad" / "x.parquet"
    bad.parent.mkdir()
    pq.write_table(pa.table({"object_id": ["a"]}), bad)
    with pytest.raises(CatalogSchemaError, match="'image' column"):
        read_set(str(bad.parent))
    pq.write_table(pa.table({"x": [1]}), bad)
    with pytest.raises(CatalogSchemaError, match="missing column 'object_id'"):
        read_set(str(bad.parent))


def test_representation_sets_and_truth_join(tmp_path):
    root = tmp_path / "emb"
    _shard(root / "part-0.parquet", _ids(0, 4), ["test"] * 4, with_truth=False, rep=True)
    es = read_set(str(root))
    assert es.images is None and es.reps.shape == (4, 4)
    np.testing.assert_array_equal(es.reps[:, 0], [0, 1, 2, 3])
    truth_dir = tmp_path / "truth"
    truth_dir.mkdir()
    pq.write_table(pa.table({"object_id": [*_ids(1, 3)[::-1], "other"],
                             "true_exsitu_frac": [0.2, 0.1, 0.9],
                             "true_lmm_lookback_gyr": [1.0, np.nan, 3.0],
                             "true_lmm_log_mass": [10.0, np.nan, 9.0]}),
                   truth_dir / "part-0.parquet")
    n = join_truth(es, read_truth(str(truth_dir)))
    assert n == 2
    np.testing.assert_array_equal(es.columns["true_exsitu_frac"], [np.nan, 0.1, 0.2, np.nan])
    pq.write_table(pa.table({"object_id": ["a"], "x": [1.0]}), truth_dir / "part-0.parquet")
    with pytest.raises(CatalogSchemaError, match="none of the columns"):
        read_truth(str(truth_dir))
