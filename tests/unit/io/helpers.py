"""Synthetic cutouts with known content for the io tests."""

from __future__ import annotations

import numpy as np

from ergo_ray.io.cutout import Cutout

#: Total flux of the test blob per band, in ZP-27 units (m = 27 - 2.5 log10 F).
BLOB_FLUX = (400.0, 900.0, 1500.0)


def blob_cutout(
    size: int = 48,
    seed: int = 0,
    noise: float = 0.0,
    sigma_px: float = 3.0,
    source: str = "blob",
) -> Cutout:
    """A centred circular Gaussian of known flux per band, plus optional white noise."""
    rng = np.random.default_rng(seed)
    y, x = np.mgrid[:size, :size] - (size - 1) / 2.0
    prof = np.exp(-0.5 * (x**2 + y**2) / sigma_px**2)
    prof /= prof.sum()
    image = np.stack([f * prof for f in BLOB_FLUX]).astype(np.float32)
    if noise:
        image += rng.normal(0, noise, image.shape).astype(np.float32)
    mask = np.zeros(image.shape, np.int32)
    mask[:, :2, :] |= 1 << 4  # EDGE on the top rows
    mask[1, 5, 7] |= (1 << 0) | (1 << 5)  # one BAD + DETECTED pixel in r
    mask[2, -1, -1] |= 1 << 8  # NO_DATA corner in i
    variance = np.full(image.shape, max(noise, 1e-3) ** 2, np.float32)
    return Cutout(image, mask, variance, source)


def aperture_flux(image: np.ndarray, radius_px: float) -> np.ndarray:
    """Sum each band inside a centred circular aperture."""
    size = image.shape[-1]
    y, x = np.mgrid[:size, :size] - (size - 1) / 2.0
    inside = (x**2 + y**2) <= radius_px**2
    return image[:, inside].sum(axis=1, dtype=np.float64)
