"""One raw cutout → one prepared uint8 image: Petrosian fit, crop, resize, stretch.

This is the single entry point shared by ``ergo-ray prepare``, by ``catalog`` on raw input
and by the model bundle on raw cutouts, so that every path prepares images identically.
"""

from __future__ import annotations

import numpy as np

from ergo_ray.errors import BadObjectError
from ergo_ray.io.cutout import Cutout
from ergo_ray.preprocess import reasons
from ergo_ray.preprocess.crop import crop_and_resize, crop_side
from ergo_ray.preprocess.petrosian import measure_petrosian
from ergo_ray.preprocess.stats import median
from ergo_ray.preprocess.stretch import scaled_box, stretch_image

__all__ = ["RADIUS_KEYS", "prepare_image"]

#: Keys of the measurement dict returned by :func:`prepare_image` (prepared-shard columns).
RADIUS_KEYS: tuple[str, ...] = ("r50_px", "r90_px", "petro_r_px", "crop_px")

#: Index of the r band in a raw (g, r, i) cutout.
_R = 1


def prepare_image(
    cutout: Cutout,
    *,
    size: int,
    crop_factor: float = 4.0,
    stretch: str = "log",
    central_box_px: int = 20,
    detect_nsigma: float = 3.0,
    min_area_px: int = 16,
) -> tuple[np.ndarray, dict[str, float]]:
    """Prepare one raw cutout for the network.

    Steps (method.md §2): Petrosian radii on the r band with neighbours and bad pixels
    masked (:func:`~ergo_ray.preprocess.petrosian.measure_petrosian`); central square crop of
    ``crop_factor × R90``, the whole stamp when larger (:mod:`~ergo_ray.preprocess.crop`);
    resize to ``size``; stretch (:mod:`~ergo_ray.preprocess.stretch`); channel order
    (i, r, g). Bad pixels are replaced by their band's median before resizing, so the log
    stretch sends them to its lower limit.

    Parameters
    ----------
    cutout : Cutout
        Raw stamp, float32 (3, H, W), bands g, r, i.
    size : int
        Output side S.
    crop_factor : float
        Crop side in units of R90.
    stretch : str
        ``"log"`` (method: per band), ``"log_joint"`` (common limits: colours kept) or
        ``"asinh"``.
    central_box_px : int
        Central box of the temporary stretch (raw pixels) and of the final stretch (pixels
        of a 256-px image, scaled to S).
    detect_nsigma : float
        Detection threshold.
    min_area_px : int
        Minimum segment area.

    Returns
    -------
    image : numpy.ndarray
        uint8 (3, S, S), channels (i, r, g).
    radii : dict
        ``r50_px``, ``r90_px``, ``petro_r_px`` (raw pixels) and ``crop_px`` (crop side).

    Raises
    ------
    BadObjectError
        With a ``reason`` from :mod:`ergo_ray.preprocess.reasons`.
    """
    img = np.asarray(cutout.image)
    if img.ndim != 3 or img.shape[0] != 3 or min(img.shape[1:]) < 8:
        msg = f"expected a (3, H, W) stamp with H, W >= 8, got shape {img.shape}"
        raise BadObjectError(msg, reason=reasons.BAD_SHAPE)
    bad = cutout.bad_pixels()
    res = measure_petrosian(
        img[_R],
        bad[_R],
        central_box_px=central_box_px,
        detect_nsigma=detect_nsigma,
        min_area_px=min_area_px,
    )
    _, h, w = img.shape
    side = crop_side(res.r90_px, crop_factor, h, w)
    resized = crop_and_resize(_filled(img, bad)[::-1], side, size)  # (i, r, g)
    out = stretch_image(resized, stretch, scaled_box(central_box_px, size))
    radii = {
        "r50_px": float(res.r50_px),
        "r90_px": float(res.r90_px),
        "petro_r_px": float(res.petro_r_px),
        "crop_px": float(side),
    }
    return out, radii


def _filled(img: np.ndarray, bad: np.ndarray) -> np.ndarray:
    """Return the float32 stamp with each band's bad pixels set to its good pixels' median."""
    work = img.astype(np.float32, copy=False)  # crop_and_resize copies what it uses
    if bad.any():
        work = work.copy()
        for b in range(3):
            if bad[b].all():
                msg = f"every pixel of band {'gri'[b]} is masked"
                raise BadObjectError(msg, reason=reasons.ALL_MASKED)
            if bad[b].any():
                work[b][bad[b]] = median(work[b][~bad[b]])
    return work
