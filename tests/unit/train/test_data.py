from __future__ import annotations

import numpy as np
import pyarrow as pa
import pyarrow.parquet as pq
import pytest

from ergo_ray.errors import ConfigError, InputError
from ergo_ray.io.prepared import discover_inputs
from ergo_ray.mock.toy import write_toy_prepared_shards
from ergo_ray.train.data import (
    batch_images,
    iterate_batches,
    mix_factors,
    read_split,
    split_counts,
)


@pytest.fixture(scope="module")
def toy(tmp_path_factory):
    root = tmp_path_factory.mktemp("toy")
    return write_toy_prepared_shards(str(root), 60, size=16, rows_per_file=25, seed=3)


def test_toy_shards_are_prepared_format(toy):
    assert [u.rsplit("/", 1)[-1] for u in toy] == ["tng100", "tng50", "hsc"]
    inputs = discover_inputs(toy)
    assert [p.image_size for p in inputs] == [16, 16, 16]
    assert all(len(p.files) == 3 for p in inputs)
    assert "true_exsitu_frac" in inputs[0].columns
    assert "true_exsitu_frac" not in inputs[2].columns  # observed domain: no truth
    schema = pq.read_schema(inputs[0].files[0])
    assert schema.field("image").type == pa.list_(pa.uint8(), 3 * 16 * 16)
    assert schema.metadata[b"ergo_ray.image_shape"] == b"3,16,16"


def test_split_counts_cover_every_row(toy):
    counts = split_counts(discover_inputs(toy))
    assert sum(counts.values()) == 180
    assert {d for d, _ in counts} == {"tng100", "tng50", "hsc"}
    assert sum(n for (_, s), n in counts.items() if s == "train") > 120


def test_read_split_fills_missing_truth_with_nan(toy):
    inputs = discover_inputs(toy)
    val = read_split(inputs, split="val", columns=("image", "domain", "log_mstar",
                                                   "true_exsitu_frac"))
    n = len(val["image"])
    assert val["image"].shape == (n, 3, 16, 16) and val["image"].dtype == np.uint8
    hsc = val["domain"] == "hsc"
    assert hsc.any() and (~hsc).any()
    assert np.isnan(val["true_exsitu_frac"][hsc]).all()
    assert np.isfinite(val["true_exsitu_frac"][~hsc]).all()
    assert np.isfinite(val["log_mstar"]).all()
    capped = read_split(inputs, split="train", columns=("image",), max_rows=10)
    assert capped["image"].shape == (10, 3, 16, 16)


def test_toy_images_follow_stellar_mass(toy):
    tr = read_split(discover_inputs(toy[:1]), split="train", columns=("image", "log_mstar"))
    flux = tr["image"].astype(float).sum(axis=(1, 2, 3))
    assert np.corrcoef(flux, tr["log_mstar"])[0, 1] > 0.8


def test_mix_factors():
    rows = {"tng100": 300, "tng50": 100, "hsc": 600}
    assert mix_factors(rows, None) == {"tng100": 1.0, "tng50": 1.0, "hsc": 1.0}
    f = mix_factors(rows, {"tng100": 1, "tng50": 1, "hsc": 2})
    # the total per pass is kept and the realised shares follow the weights
    realised = {d: f[d] * n for d, n in rows.items()}
    assert sum(realised.values()) == pytest.approx(1000)
    assert realised["hsc"] == pytest.approx(500) and realised["tng50"] == pytest.approx(250)
    assert f["tng50"] == pytest.approx(2.5)  # oversampled
    g = mix_factors(rows, {"tng100": 1, "hsc": 1, "eagle": 3})
    assert g["tng50"] == 0.0 and g["tng100"] * 300 == pytest.approx(500)
    with pytest.raises(ConfigError, match="no weight"):
        mix_factors(rows, {"eagle": 1.0})
    with pytest.raises(ConfigError, match=">= 0"):
        mix_factors(rows, {"hsc": -1.0})


def test_batch_images_from_arrow_and_numpy():
    img = np.arange(2 * 3 * 4 * 4, dtype=np.uint8).reshape(2, 3, 4, 4)
    col = pa.FixedSizeListArray.from_arrays(pa.array(img.reshape(-1)), 48)
    assert np.array_equal(batch_images(pa.table({"image": col}), 4), img)
    objs = np.empty(2, dtype=object)
    objs[0], objs[1] = img[0].reshape(-1), img[1].reshape(-1)
    assert np.array_equal(batch_images({"image": objs}, 4), img)


def test_iterate_batches_covers_all_rows_each_pass():
    images = np.arange(10, dtype=np.uint8).reshape(10, 1, 1, 1).repeat(3, axis=1)
    it = iterate_batches(images, 5, seed=0)
    first_pass = np.concatenate([next(it), next(it)])[:, 0, 0, 0]
    assert sorted(first_pass.tolist()) == list(range(10))
    with pytest.raises(InputError, match="fewer than one batch"):
        next(iterate_batches(images, 11))


def test_discover_rejects_bad_inputs(tmp_path, toy):
    (tmp_path / "empty").mkdir()
    with pytest.raises(InputError, match="no prepared shards"):
        discover_inputs([str(tmp_path / "empty")])
    with pytest.raises(InputError, match="no prepared data"):
        discover_inputs([])
    bad = tmp_path / "bad" / "shards"
    bad.mkdir(parents=True)
    pq.write_table(pa.table({"object_id": ["a"]}), bad / "part-0.parquet")
    with pytest.raises(InputError, match="missing columns"):
        discover_inputs([str(tmp_path / "bad")])
    other = write_toy_prepared_shards(str(tmp_path / "big"), 5, size=8, domains=("tng50",))
    with pytest.raises(InputError, match="different stamp sizes"):
        discover_inputs([toy[0], *other])
