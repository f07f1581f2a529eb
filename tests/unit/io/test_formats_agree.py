"""The three raw formats hold the same pixels: a known-flux source reads back the same."""

from __future__ import annotations

import numpy as np
import pytest

from ergo_ray.io import fits_hsc, fits_tng
from ergo_ray.io.shards import read_raw_shard, write_raw_shard

from .helpers import BLOB_FLUX, aperture_flux, blob_cutout


@pytest.fixture
def three_formats(tmp_path):
    cut = blob_cutout(size=64, sigma_px=3.0, noise=0.01, seed=7)
    row = {
        "object_id": "x-p0",
        "root_id": "x",
        "domain": "tng100",
        "projection": 0,
        "redshift": 0.2,
    }
    write_raw_shard(str(tmp_path / "s.parquet"), [row], [cut])
    _, (shard,) = read_raw_shard(str(tmp_path / "s.parquet"))
    hsc = fits_hsc.read_hsc_cutout(
        fits_hsc.write_hsc_cutout(cut, str(tmp_path), lineno=2, tract=1, compress=True)
    )
    tng, _ = fits_tng.read_tng_mock(
        fits_tng.write_tng_mock(cut, str(tmp_path / fits_tng.tng_mock_name(84, 1, 0)), redshift=0.2)
    )
    return cut, {"shards": shard, "hsc-fits": hsc, "tng-fits": tng}


def test_formats_round_trip_exactly_and_agree(three_formats):
    cut, read = three_formats
    for fmt, back in read.items():
        assert back.image.dtype == np.float32, fmt
        np.testing.assert_array_equal(back.image, cut.image, err_msg=fmt)
        np.testing.assert_array_equal(back.variance, cut.variance, err_msg=fmt)
        np.testing.assert_array_equal(back.mask, cut.mask, err_msg=fmt)


def test_known_flux_is_recovered_within_one_percent(three_formats):
    _, read = three_formats
    for fmt, back in read.items():
        flux = aperture_flux(back.image, radius_px=15.0)  # 5 sigma
        np.testing.assert_allclose(flux, BLOB_FLUX, rtol=0.01, err_msg=fmt)
        mag = 27 - 2.5 * np.log10(flux)
        np.testing.assert_allclose(mag, 27 - 2.5 * np.log10(BLOB_FLUX), atol=0.011)
