"""Stretches of a resized crop to uint8 (method.md §2.3).

``log`` (the method's choice, the authors' ``SingleStretchDataset``), per band:

1. x ≤ 0 → NaN; y = log10(x); y < −7 → NaN;
2. lower = median of the finite y over the whole image; upper = 99th percentile of the
   finite y in the central ``box_px`` × ``box_px`` pixels;
3. NaN/±inf → lower; clip to [lower, upper]; (y − lower) / (upper − lower);
4. × 255 and truncate to uint8 (as the authors' ``np.array(x * 255, dtype=np.uint8)``), so the
   median maps to 0 and the central 99th percentile to 255.

Steps 2-3 are invariant to the base of the logarithm; the natural log is used (faster), which
differs from log10 only by float32 rounding (a pixel in ~10^6 moves by one level).

``log_joint`` (colour-preserving; in the spirit of the authors' unused ``MultiStretch``):
the ``log`` stretch with one pair of limits for the three bands, the median of the finite y
of all bands and the 99th percentile of the finite y in the central box of all bands. The
per-band stretch maps every band to the same range and so removes the colours (and with
them most of what the stamp says about redshift and stellar mass); with common limits the
difference of two bands' levels is their colour.

``asinh`` (the authors' unused "ConnorStretch"): flux in nanomaggies scaled to a reference
magnitude of 26, ``asinh(a x) / asinh(a)`` with a = e^10, then mapped from
[−0.05, 2/3] to [0, 1], clipped, × 255 and truncated.

The method stretches 256 × 256 resized crops with a 20-px central box; for another output
size S, :func:`scaled_box` keeps the box's fraction of the image (20/256 of the side).
"""

from __future__ import annotations

from typing import get_args

import numpy as np

from ergo_ray.errors import BadObjectError
from ergo_ray.preprocess import reasons
from ergo_ray.preprocess.detection import central_box
from ergo_ray.preprocess.stats import median, percentile
from ergo_ray.types import UNITS_PER_NANOMAGGY, Stretch

__all__ = [
    "METHOD_SIZE",
    "STRETCHES",
    "asinh_stretch",
    "joint_log_stretch",
    "log_stretch",
    "scaled_box",
    "stretch_image",
]

#: The stretches :func:`stretch_image` knows (``preprocess.stretch``).
STRETCHES: tuple[Stretch, ...] = get_args(Stretch)

#: Side of the resized crop that the method's stretch box refers to.
METHOD_SIZE = 256
#: log10 values below this are treated as missing (authors' code).
LOG_FLOOR = -7.0
#: asinh stretch constants (authors' ConnorStretch).
ASINH_REF_MAG = 26.0
ASINH_A = float(np.exp(10.0))
ASINH_RANGE = (-0.05, 2.0 / 3.0)
_LN10 = float(np.log(10.0))


def scaled_box(central_box_px: int, size: int) -> int:
    """Return the central-box side for an output of ``size`` px.

    Parameters
    ----------
    central_box_px : int
        Box side on the method's 256-px image (method: 20).
    size : int
        Output side S.

    Returns
    -------
    int
        ``max(2, round(central_box_px * size / 256))``, at most ``size``.
    """
    return int(min(size, max(2, round(central_box_px * size / METHOD_SIZE))))


def _to_uint8(x: np.ndarray) -> np.ndarray:
    """Clip to [0, 1], scale by 255 and truncate to uint8 (``x`` may be overwritten)."""
    x = np.clip(x, 0.0, 1.0, out=x if x.dtype.kind == "f" else None)
    x *= 255.0
    return x.astype(np.uint8)


def log_stretch(band: np.ndarray, box_px: int) -> np.ndarray:
    """Log-stretch one band to uint8 between its median and its central 99th percentile.

    Parameters
    ----------
    band : numpy.ndarray
        2-D float image (any units; NaN allowed).
    box_px : int
        Side of the central box for the upper limit.

    Returns
    -------
    numpy.ndarray
        uint8 array of the band's shape.

    Raises
    ------
    BadObjectError
        ``empty_band`` when no pixel is positive; ``flat_stretch`` when the upper limit is
        not above the lower one.
    """
    return _log_stretch(band, box_px, "no positive pixel in the band")


def joint_log_stretch(image: np.ndarray, box_px: int) -> np.ndarray:
    """Log-stretch all bands to uint8 between their common median and central 99th percentile.

    Parameters
    ----------
    image : numpy.ndarray
        float (C, H, W) image (any units; NaN allowed).
    box_px : int
        Side of the central box for the upper limit.

    Returns
    -------
    numpy.ndarray
        uint8 (C, H, W).

    Raises
    ------
    BadObjectError
        ``empty_band`` when no pixel of any band is positive; ``flat_stretch`` when the
        upper limit is not above the lower one.
    """
    return _log_stretch(image, box_px, "no positive pixel in the image")


def _log_limits(y: np.ndarray, fin: np.ndarray, box_px: int, empty: str) -> tuple[float, float]:
    """Return (lower, upper) of the log stretch of ``y`` = log of the valid pixels ``fin``.

    Missing pixels sit at log(floor), below every valid value: the median skips them.
    """
    n_missing = y.size - int(np.count_nonzero(fin))
    if n_missing == y.size:
        msg = f"{empty}: the log stretch is undefined"
        raise BadObjectError(msg, reason=reasons.EMPTY_BAND)
    lower = median(y, skip=n_missing)
    upper = percentile(central_box(y, box_px)[central_box(fin, box_px)], 99.0)
    if not (np.isfinite(upper) and upper > lower):
        msg = (
            f"central 99th percentile {upper / _LN10:.3g} not above the median "
            f"{lower / _LN10:.3g} (log10)"
        )
        raise BadObjectError(msg, reason=reasons.FLAT_STRETCH)
    return lower, upper


def _log_of_valid(x: np.ndarray) -> tuple[np.ndarray, np.ndarray]:
    """Return (log of x with missing pixels at log(floor), mask of the valid pixels)."""
    floor = np.float32(10.0**LOG_FLOOR)
    fin = (x > floor) & (x < np.inf)  # x <= 0, NaN, inf and log10 x < -7 are missing
    # Natural log (numpy's float32 log10 is several times slower): the stretch maps
    # [lower, upper] to [0, 1], which does not depend on the base.
    return np.log(np.where(fin, x, floor)), fin


def _log_stretch(x: np.ndarray, box_px: int, empty: str) -> np.ndarray:
    """Return the log stretch of a 2-D band or a (C, H, W) image with one pair of limits."""
    y, fin = _log_of_valid(np.asarray(x, dtype=np.float32))
    lower, upper = _log_limits(y, fin, box_px, empty)
    y -= lower
    y /= upper - lower
    return _to_uint8(y)


def _log_stretch_bands(image: np.ndarray, box_px: int) -> np.ndarray:
    """Return the per-band log stretch of a (C, H, W) image, each band with its own limits.

    The same arithmetic as :func:`log_stretch` band by band (float32, limits as Python
    floats rounded to float32), with the element-wise steps done once for all bands.
    """
    y, fin = _log_of_valid(np.asarray(image, dtype=np.float32))
    limits = [_log_limits(y[b], fin[b], box_px, "no positive pixel in the band")
              for b in range(y.shape[0])]
    y -= np.array([lo for lo, _ in limits], dtype=np.float32)[:, None, None]
    y /= np.array([hi - lo for lo, hi in limits], dtype=np.float32)[:, None, None]
    return _to_uint8(y)


def asinh_stretch(band: np.ndarray) -> np.ndarray:
    """Arcsinh-stretch one band (flux in HSC ZP-27 units) to uint8.

    Parameters
    ----------
    band : numpy.ndarray
        2-D float image in the readers' flux unit; NaN is treated as 0.

    Returns
    -------
    numpy.ndarray
        uint8 array of the band's shape.
    """
    x = np.nan_to_num(np.asarray(band, dtype=np.float64), nan=0.0, posinf=0.0, neginf=0.0)
    x = x / UNITS_PER_NANOMAGGY * 10 ** (0.4 * (22.5 - ASINH_REF_MAG))
    y = np.arcsinh(ASINH_A * x) / np.arcsinh(ASINH_A)
    lo, hi = ASINH_RANGE
    return _to_uint8((y - lo) / (hi - lo))


def stretch_image(image: np.ndarray, method: str, box_px: int) -> np.ndarray:
    """Stretch every band of a (C, S, S) image.

    Parameters
    ----------
    image : numpy.ndarray
        float (C, S, S).
    method : str
        ``"log"`` (per band), ``"log_joint"`` (common limits) or ``"asinh"``.
    box_px : int
        Central-box side for the log stretches.

    Returns
    -------
    numpy.ndarray
        uint8 (C, S, S).

    Raises
    ------
    ValueError
        For an unknown method.
    BadObjectError
        From :func:`log_stretch` or :func:`joint_log_stretch`.
    """
    if method == "log":
        return _log_stretch_bands(image, box_px)
    if method == "log_joint":
        return joint_log_stretch(image, box_px)
    if method == "asinh":
        return np.stack([asinh_stretch(b) for b in image])
    msg = f"unknown stretch {method!r}; expected one of {STRETCHES}"
    raise ValueError(msg)
