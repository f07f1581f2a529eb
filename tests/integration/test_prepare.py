"""``ergo-ray prepare`` on the loopback S3 endpoint: formats agree, bad inputs are reported."""

from __future__ import annotations

import io
import json

import numpy as np
import pyarrow as pa
import pyarrow.parquet as pq
import pytest

from ergo_ray.cli.main import main
from ergo_ray.io import storage
from ergo_ray.io.schemas import SPLITS

pytestmark = [pytest.mark.ray, pytest.mark.s3]


def _read_folder(url: str, store) -> pa.Table:
    files = storage.list_files(url, store, suffixes=(".parquet",))
    return pa.concat_tables(
        [pq.read_table(io.BytesIO(storage.read_bytes(f, store))) for f in files],
        promote_options="default",
    )


def _mock(root: str, fmt: str, overrides: list[str], domain: str = "tng100", n: int = 5) -> str:
    out = f"{root}/mock-{domain}-{fmt}"
    rc = main(["mock", "--domain", domain, "--n", str(n), "--format", fmt, "--seed", "3",
               "--out", out, "--preset", "ci", *overrides])
    assert rc == 0
    return out


def _images(table: pa.Table) -> dict[str, np.ndarray]:
    side = round(np.sqrt(table.schema.field("image").type.list_size / 3))
    flat = table.column("image").combine_chunks().flatten().to_numpy(zero_copy_only=False)
    imgs = flat.reshape(table.num_rows, 3, side, side)
    return dict(zip(table.column("object_id").to_pylist(), imgs, strict=True))


def test_fits_formats_give_the_same_prepared_images(ray_session, bucket, storage_cfg,
                                                     s3_overrides):
    root = f"s3://{bucket}"
    tables = {}
    for fmt in ("hsc-fits", "tng-fits", "shards"):
        raw = _mock(root, fmt, s3_overrides)
        out = f"{root}/prepared-{fmt}"
        assert main(["prepare", "--in", raw, "--out", out, "--preset", "ci", *s3_overrides]) == 0
        tables[fmt] = _read_folder(f"{out}/shards", storage_cfg)
        assert storage.exists(f"{out}/_meta/config.yaml", storage_cfg)
    hsc, tng, shards = (_images(tables[f]) for f in ("hsc-fits", "tng-fits", "shards"))
    assert len(hsc) == 10 and set(hsc) == set(tng) == set(shards)
    for oid in hsc:
        # Same galaxy, same pixels up to the float rounding of the unit conversions.
        for other in (tng, shards):
            diff = np.abs(hsc[oid].astype(int) - other[oid].astype(int))
            assert diff.max() <= 1 and np.mean(diff == 0) > 0.99, oid
    t = tables["tng-fits"]
    meta = t.schema.metadata
    assert meta[b"ergo_ray.kind"] == b"prepared-shard"
    assert meta[b"ergo_ray.image_shape"] == b"3,24,24"
    assert meta[b"ergo_ray.schema"] == b"1"
    for col in ("r50_px", "r90_px", "petro_r_px", "crop_px", "split", "root_id", "redshift"):
        assert col in t.column_names
    r50, r90 = t.column("r50_px").to_numpy(), t.column("r90_px").to_numpy()
    assert np.all((r50 > 0) & (r90 > r50))
    assert set(t.column("split").to_pylist()) <= set(SPLITS)
    # Projections of one galaxy share a split.
    pairs = {}
    for r, s in zip(t.column("root_id").to_pylist(), t.column("split").to_pylist(), strict=True):
        pairs.setdefault(r, set()).add(s)
    assert all(len(v) == 1 for v in pairs.values())
    # Same prepared values as the library function on the same galaxy (channel order i, r, g).
    from ergo_ray.mock.render import mock_object
    from ergo_ray.preprocess import prepare_image

    _, cut = mock_object("tng100", 3, 0, 0, 48)
    direct, radii = prepare_image(cut, size=24)
    got = tng["tng100-3-0000000-p0"]
    assert np.mean(np.abs(direct.astype(int) - got.astype(int)) <= 1) > 0.99
    row = t.filter(pa.compute.equal(t.column("object_id"), "tng100-3-0000000-p0"))
    assert row.column("r90_px")[0].as_py() == pytest.approx(radii["r90_px"], rel=1e-3)


def _rewrite_fits(url: str, store, fn) -> None:
    from astropy.io import fits

    with fits.open(io.BytesIO(storage.read_bytes(url, store))) as hdul:
        fn(hdul)
        buf = io.BytesIO()
        hdul.writeto(buf)
    storage.write_bytes(url, buf.getvalue(), store)


def test_corrupt_inputs_are_reported_and_good_ones_kept_once(ray_session, bucket, storage_cfg,
                                                              s3_overrides):
    root = f"s3://{bucket}"
    raw = _mock(root, "tng-fits", s3_overrides, n=6)
    files = storage.list_files(f"{raw}/images", storage_cfg, suffixes=(".fits",))
    assert len(files) == 12
    truncated, garbage, missing, empty = files[1], files[4], files[6], files[9]
    data = storage.read_bytes(truncated, storage_cfg)
    storage.write_bytes(truncated, data[: len(data) // 3], storage_cfg)
    storage.write_bytes(garbage, b"this is not a FITS file" * 100, storage_cfg)
    storage.remove(missing, storage_cfg)

    def blank(hdul):  # pure noise: no galaxy to measure
        rng = np.random.default_rng(0)
        for b in "GRI":
            hdul[f"SUBARU_HSC.{b}"].data = rng.normal(0, 1e-3, hdul[f"SUBARU_HSC.{b}"].data.shape)

    _rewrite_fits(empty, storage_cfg, blank)
    out = f"{root}/prepared-corrupt"
    assert main(["prepare", "--in", raw, "--out", out, "--preset", "ci", *s3_overrides]) == 0
    good = _read_folder(f"{out}/shards", storage_cfg)
    errors = _read_folder(f"{out}/errors", storage_cfg)
    bad_names = {truncated: None, garbage: None, missing: None, empty: None}
    by_url = {r["input_url"].rsplit("/", 1)[-1]: r for r in errors.to_pylist()}
    for url in bad_names:
        assert url.rsplit("/", 1)[-1] in by_url, url
    reasons = {by_url[u.rsplit("/", 1)[-1]]["reason"] for u in bad_names}
    assert by_url[empty.rsplit("/", 1)[-1]]["reason"] == "no_source"
    assert by_url[missing.rsplit("/", 1)[-1]]["reason"] == "missing_file"
    assert reasons <= {"no_source", "missing_file", "truncated", "not_fits", "corrupt_file",
                       "unreadable_file"}
    assert errors.num_rows == 4
    ids = good.column("object_id").to_pylist()
    assert len(ids) == len(set(ids)) == 8
    assert not set(ids) & set(errors.column("object_id").to_pylist())
    # Re-running the same command resumes: nothing is prepared twice.
    assert main(["prepare", "--in", raw, "--out", out, "--preset", "ci", *s3_overrides]) == 0
    again = _read_folder(f"{out}/shards", storage_cfg).column("object_id").to_pylist()
    assert sorted(again) == sorted(ids)
    marker = json.loads(storage.read_bytes(f"{out}/_parts/unit-00000.json", storage_cfg))
    assert marker["ok"] + marker["errors"] == 12


def test_truth_table_is_copied_and_bad_usage_exits_2(ray_session, bucket, storage_cfg,
                                                      s3_overrides, tmp_path):
    root = f"s3://{bucket}"
    raw = _mock(root, "shards", s3_overrides, domain="hsc", n=3)
    out = f"{root}/prepared-hsc"
    assert main(["prepare", "--in", raw, "--out", out, "--preset", "ci", *s3_overrides]) == 0
    truth = _read_folder(f"{out}/truth", storage_cfg)
    good = _read_folder(f"{out}/shards", storage_cfg)
    assert "true_exsitu_frac" in truth.column_names
    assert "true_exsitu_frac" not in good.column_names
    assert set(good.column("object_id").to_pylist()) <= set(truth.column("object_id").to_pylist())
    # Output inside the input, or an empty input: one-line usage errors.
    assert main(["prepare", "--in", raw, "--out", f"{raw}/x", "--preset", "ci",
                 *s3_overrides]) == 2
    (tmp_path / "empty").mkdir()
    assert main(["prepare", "--in", str(tmp_path / "empty"), "--out", str(tmp_path / "o"),
                 "--preset", "ci"]) == 2
