"""Stretch definition on hand-made arrays, crop rule, resize, and prepare_image end to end."""

from __future__ import annotations

import numpy as np
import pytest

from ergo_ray.errors import BadObjectError
from ergo_ray.io.cutout import Cutout
from ergo_ray.preprocess import prepare_image, reasons
from ergo_ray.preprocess.crop import crop_and_resize, crop_side, resize_matrix
from ergo_ray.preprocess.stretch import (
    asinh_stretch,
    joint_log_stretch,
    log_stretch,
    scaled_box,
    stretch_image,
)
from tests.unit.preprocess.stamps import sersic_stamp


def test_log_stretch_maps_median_to_0_and_central_p99_to_255():
    rng = np.random.default_rng(1)
    band = 10 ** rng.uniform(-2, 0, (40, 40))
    band[15:25, 15:25] = 10 ** rng.uniform(1, 2, (10, 10))  # bright centre
    y = np.log10(band)
    lower = np.median(y)
    upper = np.percentile(y[15:25, 15:25], 99)
    out = log_stretch(band, box_px=10)
    assert out.dtype == np.uint8
    # The method: (log10 x - lower) / (upper - lower) * 255, clipped, truncated.
    expect = (np.clip((y - lower) / (upper - lower), 0, 1) * 255).astype(np.uint8)
    np.testing.assert_array_equal(out, expect)
    assert out[y <= lower].max() == 0
    assert out[y >= upper].min() == 255
    # The pixel at the median itself maps to 0 and the 99th-percentile value to 255.
    k = np.argmin(np.abs(y - lower))
    assert out.ravel()[k] <= 1


def test_log_stretch_handles_nan_and_nonpositive():
    band = np.full((8, 8), 10.0)
    band[:4] = 1.0  # median between
    band[3, 3:5] = 100.0
    band[0, 0] = 0.0
    band[0, 1] = -5.0
    band[0, 2] = np.nan
    band[0, 3] = 1e-9  # log10 < -7 -> NaN
    band[4, 4] = 1000.0
    out = log_stretch(band, box_px=4)
    # NaN, <= 0 and too-small values all take the lower limit, i.e. 0.
    assert list(out[0, :4]) == [0, 0, 0, 0]
    assert out[4, 4] == 255
    ok = np.nan_to_num(band, nan=0.0) > 1e-7
    y = np.log10(np.where(ok, band, 1.0))
    lower = np.median(y[ok])
    upper = np.percentile(y[2:6, 2:6][ok[2:6, 2:6]], 99)
    y[~ok] = lower
    expect = (np.clip((y - lower) / (upper - lower), 0, 1) * 255).astype(np.uint8)
    np.testing.assert_array_equal(out, expect)


def test_log_stretch_failures_are_named():
    with pytest.raises(BadObjectError) as err:
        log_stretch(np.zeros((8, 8)), box_px=4)
    assert err.value.reason == reasons.EMPTY_BAND
    with pytest.raises(BadObjectError) as err:
        log_stretch(np.ones((8, 8)), box_px=4)
    assert err.value.reason == reasons.FLAT_STRETCH


def test_joint_log_stretch_uses_one_pair_of_limits_and_keeps_colours():
    rng = np.random.default_rng(2)
    g = 10 ** rng.uniform(-2, 0, (40, 40))
    g[15:25, 15:25] = 10 ** rng.uniform(1, 2, (10, 10))
    image = np.stack([g, 2.0 * g, 4.0 * g])  # r = 2 g, i = 4 g: a constant colour
    image[1, 0, 0] = np.nan  # a missing pixel takes the lower limit
    out = joint_log_stretch(image, box_px=10)
    assert out.dtype == np.uint8 and out.shape == image.shape
    y = np.log10(image)
    ok = np.isfinite(y)
    lower = np.median(y[ok])  # over all bands
    upper = np.percentile(y[:, 15:25, 15:25][ok[:, 15:25, 15:25]], 99)
    y[~ok] = lower
    expect = (np.clip((y - lower) / (upper - lower), 0, 1) * 255).astype(np.uint8)
    np.testing.assert_array_equal(out, expect)
    # the colour survives: where no band clips, the bands differ by log10(2) in stretched
    # units (up to the truncation to integers), unlike the per-band stretch
    step = np.log10(2.0) / (upper - lower) * 255
    inside = (out > 0).all(axis=0) & (out < 255).all(axis=0)
    d = out[1].astype(float) - out[0]
    assert inside.sum() > 100 and np.all(np.abs(d[inside] - step) <= 1)
    per_band = stretch_image(image, "log", 10)
    assert abs(np.median(per_band[1].astype(float) - per_band[0])) <= 1
    np.testing.assert_array_equal(stretch_image(image, "log_joint", 10), out)
    with pytest.raises(BadObjectError) as err:
        joint_log_stretch(np.zeros((3, 8, 8)), box_px=4)
    assert err.value.reason == reasons.EMPTY_BAND
    with pytest.raises(BadObjectError) as err:
        joint_log_stretch(np.ones((3, 8, 8)), box_px=4)
    assert err.value.reason == reasons.FLAT_STRETCH
    with pytest.raises(ValueError, match="unknown stretch 'lin'"):
        stretch_image(image, "lin", 10)


def test_asinh_stretch_is_monotonic_and_bounded():
    x = np.linspace(-10, 1e4, 200).reshape(10, 20).astype(np.float32)
    out = asinh_stretch(x)
    assert out.dtype == np.uint8
    assert np.all(np.diff(out.ravel().astype(int)) >= 0)
    assert out.min() == 0 and out.max() == 255
    with pytest.raises(ValueError, match="unknown stretch"):
        stretch_image(np.ones((3, 8, 8)), "gamma", 4)


def test_scaled_box_keeps_the_method_fraction():
    assert scaled_box(20, 256) == 20
    assert scaled_box(20, 128) == 10
    assert scaled_box(20, 24) == 2
    assert scaled_box(20, 8) == 2


def test_crop_side_rule():
    assert crop_side(10.0, 4.0, 200, 200) == 40.0
    assert crop_side(60.0, 4.0, 200, 200) == 200.0  # whole stamp, no padding
    assert crop_side(60.0, 4.0, 150, 200) == 150.0  # central square of a non-square stamp


def test_resize_matrix_rows_sum_to_one_and_preserve_constants():
    for n_in, start, length, n_out in [(200, 0, 200, 128), (40, 10.3, 17.5, 64), (7, 0, 7, 3)]:
        m = resize_matrix(n_in, start, length, n_out)
        np.testing.assert_allclose(m.sum(axis=1), 1.0, rtol=1e-5)
        np.testing.assert_allclose(m @ np.full(n_in, 3.0), 3.0, rtol=1e-5)


def test_crop_and_resize_area_average_and_identity():
    img = np.arange(3 * 8 * 8, dtype=np.float32).reshape(3, 8, 8)
    same = crop_and_resize(img, 8, 8)
    np.testing.assert_allclose(same, img, atol=1e-4)
    half = crop_and_resize(img, 8, 4)
    expect = img.reshape(3, 4, 2, 4, 2).mean(axis=(2, 4))
    np.testing.assert_allclose(half, expect, rtol=1e-5)
    centre = crop_and_resize(img, 4, 4)  # central 4x4 crop, no resampling
    np.testing.assert_allclose(centre, img[:, 2:6, 2:6], atol=1e-4)
    # Total flux is preserved by area averaging (mean x area).
    big = np.random.default_rng(0).random((1, 200, 200)).astype(np.float32)
    small = crop_and_resize(big, 200, 128)
    assert small.mean() == pytest.approx(big.mean(), rel=1e-4)


def test_prepare_image_channels_and_radii():
    cut, _ = sersic_stamp(4, size=96, colours=(0.2, 1.0, 3.0))
    out, radii = prepare_image(cut, size=32)
    assert out.shape == (3, 32, 32) and out.dtype == np.uint8
    assert set(radii) == {"r50_px", "r90_px", "petro_r_px", "crop_px"}
    assert radii["crop_px"] == pytest.approx(min(4 * radii["r90_px"], 96))
    # Channel 0 is i, 2 is g: with per-band stretches they differ only through the noise,
    # so stretch the raw bands ourselves and compare the orders.
    swapped = Cutout(image=cut.image[::-1].copy())
    out_sw, _ = prepare_image(swapped, size=32)
    np.testing.assert_array_equal(out_sw[0], out[2])
    np.testing.assert_array_equal(out_sw[2], out[0])
    assert out[:, 16, 16].min() > 200  # bright centre in every channel
    assert np.median(out) < 60  # sky near the lower limit


def test_prepare_image_uses_crop_factor_and_size():
    cut, _ = sersic_stamp(1, size=128)
    a, ra = prepare_image(cut, size=24, crop_factor=2.0)
    b, rb = prepare_image(cut, size=48, crop_factor=4.0, stretch="asinh")
    assert a.shape == (3, 24, 24) and b.shape == (3, 48, 48)
    assert ra["r90_px"] == rb["r90_px"]
    assert ra["crop_px"] == pytest.approx(2 * ra["r90_px"])


def test_prepare_image_masks_bad_pixels():
    # A saturated patch inside the crop, beside the galaxy (centre 48, crop ≈ ±25 px), and
    # a NaN pixel: masked, they are filled and barely change the stamp; the same patch
    # unmasked burns white pixels into it.
    cut, _ = sersic_stamp(6, size=96)
    mask = np.zeros(cut.image.shape, dtype=np.int32)
    mask[:, 36:40, 58:64] = 1 << 1  # SAT
    img = cut.image.copy()
    img[:, 36:40, 58:64] = 1e5
    img[0, 52, 40] = np.nan
    out, radii = prepare_image(Cutout(image=img, mask=mask), size=32)
    clean, radii_clean = prepare_image(cut, size=32)
    burnt = img.copy()
    burnt[0, 52, 40] = cut.image[0, 52, 40]
    unmasked, _ = prepare_image(Cutout(image=burnt), size=32)
    d_masked = np.abs(out.astype(float) - clean)
    d_unmasked = np.abs(unmasked.astype(float) - clean)
    assert d_masked.max() < 128 and d_unmasked.max() > 200
    assert d_masked.mean() < 0.5 * d_unmasked.mean()
    assert radii["r90_px"] == pytest.approx(radii_clean["r90_px"], rel=0.03)


@pytest.mark.parametrize(
    ("image", "reason"),
    [
        (np.zeros((2, 32, 32), np.float32), reasons.BAD_SHAPE),
        (np.full((3, 32, 32), np.nan, np.float32), reasons.ALL_MASKED),
        (np.random.default_rng(0).normal(0, 1, (3, 48, 48)).astype(np.float32),
         reasons.NO_SOURCE),
    ],
)
def test_prepare_image_failures_are_named(image, reason):
    with pytest.raises(BadObjectError) as err:
        prepare_image(Cutout(image=image), size=16)
    assert err.value.reason == reason
    assert reason in reasons.ALL_REASONS
