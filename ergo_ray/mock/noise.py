"""Pixel noise and mask planes of a mock HSC coadd cutout (research §1.5, §1.6, recipe step 12)."""

from __future__ import annotations

import numpy as np

__all__ = [
    "DETECTED_BIT",
    "GAIN_E_PER_UNIT",
    "INTRP_BIT",
    "SATURATION_LEVEL",
    "SAT_BIT",
    "correlated_noise",
    "detection_mask",
]

#: HSC mask planes (research §1.5).
SAT_BIT = 1
INTRP_BIT = 2
DETECTED_BIT = 5
#: Effective electrons per ZP-27 unit in the Wide coadd (600 s g/r, 1200 s i; ZP e⁻/s from
#: surveycodex HSC.yaml): sets the source Poisson noise, negligible except in bright cores.
GAIN_E_PER_UNIT: tuple[float, float, float] = (3450.0, 3300.0, 5260.0)
#: Pixel level above which a mock ``hsc`` pixel counts as saturated (ZP-27 units).
SATURATION_LEVEL = 1500.0


def _kernel(c: float) -> np.ndarray:
    k = np.array([[c * c, c, c * c], [c, 1.0, c], [c * c, c, c * c]])
    return k / np.sqrt((k**2).sum())


def correlated_noise(
    rng: np.random.Generator,
    shape: tuple[int, int, int],
    sigma: tuple[float, float, float],
    corr: float,
) -> np.ndarray:
    """White Gaussian noise convolved with a 3×3 kernel, renormalised to σ per band.

    Parameters
    ----------
    rng : numpy.random.Generator
        Source of randomness.
    shape : tuple of int
        (bands, H, W).
    sigma : tuple of float
        Per-band standard deviation after correlation.
    corr : float
        Weight of the 4 nearest neighbours (diagonals get ``corr**2``); 0 gives white noise.

    Returns
    -------
    numpy.ndarray
        float64 noise of ``shape``; the kernel is normalised so that the marginal σ is exact.
    """
    nb, h, w = shape
    white = rng.standard_normal((nb, h + 2, w + 2))
    if corr <= 0:
        out = white[:, 1:-1, 1:-1]
    else:
        k = _kernel(corr)
        out = np.zeros((nb, h, w))
        for dy in range(3):
            for dx in range(3):
                out += k[dy, dx] * white[:, dy : dy + h, dx : dx + w]
    return out * np.asarray(sigma, dtype=float)[:, None, None]


def detection_mask(
    model: np.ndarray, sigma: tuple[float, float, float], nsigma: float = 2.0
) -> np.ndarray:
    """Set the DETECTED bit where the noise-free model exceeds ``nsigma`` × σ of its band.

    Parameters
    ----------
    model : numpy.ndarray
        (3, H, W) noise-free image.
    sigma : tuple of float
        Per-band σ.
    nsigma : float
        Threshold in σ.

    Returns
    -------
    numpy.ndarray
        int32 (3, H, W) mask with bit 5 set where detected.
    """
    thr = nsigma * np.asarray(sigma, dtype=float)[:, None, None]
    return np.where(model > thr, np.int32(1 << DETECTED_BIT), np.int32(0)).astype(
        np.int32
    )
