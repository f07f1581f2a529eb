"""prepare_image against a plain numpy rendering of method.md §2, pixel for pixel.

The reference takes the Petrosian radii and the crop/resize from their own (separately
tested) functions and writes out the rest as the method states it: bad pixels filled with
their band's median, channels (i, r, g), and per band the log stretch with
``numpy.median``/``numpy.percentile`` limits, in float32, truncated to uint8.
"""

from __future__ import annotations

import numpy as np
import pytest

from ergo_ray.io.cutout import Cutout
from ergo_ray.preprocess import prepare_image
from ergo_ray.preprocess.crop import crop_and_resize
from ergo_ray.preprocess.petrosian import measure_petrosian
from ergo_ray.preprocess.stretch import scaled_box
from tests.unit.preprocess.stamps import sersic_stamp


def _reference_log(band: np.ndarray, box: int) -> np.ndarray:
    x = band.astype(np.float32)
    floor = np.float32(1e-7)
    valid = (x > floor) & np.isfinite(x)
    y = np.log(np.where(valid, x, floor))
    lower = float(np.median(y[valid]))
    h, w = y.shape
    y0, x0 = h // 2 - box // 2, w // 2 - box // 2
    centre, centre_ok = y[y0 : y0 + box, x0 : x0 + box], valid[y0 : y0 + box, x0 : x0 + box]
    upper = float(np.percentile(centre[centre_ok], 99.0))
    z = (y - np.float32(lower)) / np.float32(upper - lower)
    return (np.clip(z, 0, 1) * np.float32(255)).astype(np.uint8)


def _reference(cut: Cutout, size: int) -> np.ndarray:
    img, bad = cut.image.astype(np.float32), cut.bad_pixels()
    r90 = measure_petrosian(img[1], bad[1]).r90_px
    side = min(4.0 * r90, *img.shape[1:])
    work = img.copy()
    for b in range(3):
        work[b][bad[b]] = np.median(img[b][~bad[b]])
    resized = crop_and_resize(work[::-1], side, size)
    return np.stack([_reference_log(band, scaled_box(20, size)) for band in resized])


def _with_defects(cut: Cutout, seed: int) -> Cutout:
    rng = np.random.default_rng(seed)
    img = cut.image.copy()
    mask = np.zeros(img.shape, np.int32)
    b, y, x = rng.integers(0, 3), *rng.integers(10, img.shape[1] - 14, 2)
    mask[b, y : y + 4, x : x + 6] = 1 << 1  # SAT
    img[b, y : y + 4, x : x + 6] = 1e5
    img[(b + 1) % 3, y, x] = np.nan
    img[:, :3, :] = -1.0  # non-positive sky: missing in the log
    return Cutout(image=img, mask=mask)


@pytest.mark.parametrize("seed", range(6))
@pytest.mark.parametrize("size", [32, 128])
def test_prepare_image_equals_the_plain_reference(seed, size):
    cut, _ = sersic_stamp(seed, size=96, neighbour=seed % 2 == 1)
    if seed >= 3:
        cut = _with_defects(cut, seed)
    got, _ = prepare_image(cut, size=size)
    np.testing.assert_array_equal(got, _reference(cut, size))
