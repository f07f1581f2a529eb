"""Rendered mock stamps: determinism, shapes, flux, masks, the stamps PNG stage."""

from __future__ import annotations

import hashlib
import subprocess
import sys

import numpy as np
import pytest

from ergo_ray.errors import ConfigError
from ergo_ray.io.cutout import Cutout
from ergo_ray.mock import draw_galaxy, mock_object
from ergo_ray.mock.noise import DETECTED_BIT, SAT_BIT, correlated_noise
from ergo_ray.types import DOMAINS

_HASH_SNIPPET = (
    "import hashlib;from ergo_ray.mock import mock_object;"
    "r,c=mock_object('hsc',5,17,1,48);"
    "print(hashlib.sha256(c.image.tobytes()+c.mask.tobytes()+c.variance.tobytes()).hexdigest())"
)


def _digest(c: Cutout) -> str:
    return hashlib.sha256(
        c.image.tobytes() + c.mask.tobytes() + c.variance.tobytes()
    ).hexdigest()


def test_same_arguments_same_pixels_in_another_process():
    row_a, a = mock_object("hsc", 5, 17, 1, 48)
    row_b, b = mock_object("hsc", 5, 17, 1, 48)
    assert np.array_equal(a.image, b.image) and np.array_equal(a.mask, b.mask)
    assert row_a.keys() == row_b.keys()
    out = subprocess.run(
        [sys.executable, "-c", _HASH_SNIPPET],
        capture_output=True,
        text=True,
        check=True,
        timeout=120,
    )
    assert out.stdout.strip() == _digest(a)


def test_different_index_or_projection_gives_different_pixels():
    _, a = mock_object("tng100", 0, 1, 0, 48)
    _, b = mock_object("tng100", 0, 2, 0, 48)
    _, c = mock_object("tng100", 0, 1, 1, 48)
    assert not np.array_equal(a.image, b.image)
    assert not np.array_equal(a.image, c.image)


@pytest.mark.parametrize("domain", DOMAINS)
def test_stamp_shape_dtype_and_finite(domain):
    row, cut = mock_object(domain, 1, 3, 0, 64)
    assert cut.image.shape == (3, 64, 64) and cut.image.dtype == np.float32
    assert cut.mask.shape == (3, 64, 64) and cut.mask.dtype == np.int32
    assert cut.variance.shape == (3, 64, 64) and cut.variance.dtype == np.float32
    assert np.isfinite(cut.image).all() and (cut.variance > 0).all()
    assert cut.source == row["object_id"] == f"{domain}-1-0000003-p0"
    # the galaxy sits in the centre and is detected there in every band
    assert ((cut.mask[:, 32, 32] >> DETECTED_BIT) & 1).all()
    centre = cut.image[:, 28:36, 28:36].mean(axis=(1, 2))
    edge = np.median(cut.image[:, :6, :], axis=(1, 2))
    assert (centre > edge + 3 * np.sqrt(cut.variance[:, 0, 0])).all()


def test_noise_matches_hsc_wide_depth():
    row, cut = mock_object("tng100", 0, 9, 0, 96, field=False)
    _, model = mock_object("tng100", 0, 9, 0, 96, noise=False, field=False)
    resid = (cut.image - model.image)[:, :20, :20]
    sig = np.array([0.037, 0.054, 0.069]) * row["struct_noise_depth"]
    assert np.allclose(resid.std(axis=(1, 2)), sig, rtol=0.2)
    # neighbouring pixels are correlated, as in warped coadds
    r = resid[2]
    rho = np.corrcoef(r[:, :-1].ravel(), r[:, 1:].ravel())[0, 1]
    assert 0.2 < rho < 0.8


def test_correlated_noise_has_the_requested_sigma():
    rng = np.random.default_rng(0)
    z = correlated_noise(rng, (3, 200, 200), (0.037, 0.054, 0.069), 0.45)
    assert np.allclose(z.std(axis=(1, 2)), [0.037, 0.054, 0.069], rtol=0.03)


def test_noise_free_flux_matches_catalogue_magnitude():
    checked = 0
    for index in range(12):
        gal = draw_galaxy("tng100", 2, index)
        if gal.latents["companion_flux"] > 0:
            continue
        row, cut = mock_object("tng100", 2, index, 0, 256, noise=False, field=False)
        mag = 27.0 - 2.5 * np.log10(cut.image[2].sum())
        assert mag == pytest.approx(row["i_mag"], abs=0.03), row["object_id"]
        # colours follow the components' g − r
        assert cut.image[0].sum() < cut.image[2].sum()
        checked += 1
    assert checked >= 8


def test_hsc_has_saturated_star_masks_sometimes():
    found = 0
    for index in range(80):
        gal = draw_galaxy("hsc", 0, index)
        if not gal.view(0).saturated_star:
            continue
        _, cut = mock_object("hsc", 0, index, 0, 64)
        sat = (cut.mask >> SAT_BIT) & 1
        assert sat.any(), index
        assert cut.bad_pixels()[sat.astype(bool)].all()
        found += 1
        if found == 2:
            break
    assert found >= 1
    # simulations never saturate
    for index in range(20):
        _, cut = mock_object("tng100", 0, index, 0, 48)
        assert not ((cut.mask >> SAT_BIT) & 1).any()


def test_bad_arguments_are_config_errors():
    with pytest.raises(ConfigError, match="stamp_px"):
        mock_object("tng100", 0, 0, 0, 8)
    with pytest.raises(ConfigError, match="projection"):
        mock_object("tng100", 0, 0, 5, 64)


def test_stamps_stage_writes_a_png_grid(tmp_path):
    import matplotlib.image as mpimg

    from ergo_ray.cli.main import main

    out = tmp_path / "stamps.png"
    assert main(["stamps", "--out", str(out), "--n", "6", "--stamp-px", "64"]) == 0
    assert out.exists()
    img = mpimg.imread(str(out))
    assert img.ndim == 3 and img.shape[0] > 300 and img.shape[1] > 500
    assert img[..., :3].std() > 0.05
    assert (tmp_path / "_meta" / "config.yaml").exists()
    assert main(["stamps", "--out", str(tmp_path / "x.jpg"), "--n", "2"]) == 2
