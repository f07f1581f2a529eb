"""Source detection and Petrosian radii (r_petro, R50, R90) of the central galaxy.

Definitions (method.md §2.1; documented here because they fix what ``r90_px`` means):

* **Temporary stretch.** The band is clipped to [median of the whole stamp, 99th percentile
  of the central ``central_box_px`` × ``central_box_px`` pixels] and mapped linearly to [0, 1].
* **Detection.** Background level and noise are the sigma-clipped (3σ, 5 iterations) median
  and standard deviation of the stretched image. The stretched image is smoothed with a
  3 × 3 Gaussian kernel of FWHM 3 px; pixels above ``median + nsigma × std`` form
  8-connected segments; segments smaller than ``min_area_px`` are discarded. No deblending
  (the authors used photutils' deblender; here a touching neighbour stays part of the
  central segment).
* **Central source.** The segment under the stamp centre, else the segment with a pixel
  nearest the centre, if that pixel lies inside the central box; otherwise ``no_source``.
  Its centre is the flux-weighted centroid of its pixels.
* **Masking.** Pixels of the other segments and bad pixels (mask bits BAD, SAT, NO_DATA and
  non-finite values) are replaced by the mean of the unmasked pixels in the same 1-px
  annulus around the centre. The background (sigma-clipped median of pixels outside every
  segment) is subtracted.
* **Curve of growth.** F(r) is the flux inside a circle of radius r, where a pixel at
  distance d from the centre contributes the fraction ``clip(r - d + 1/2, 0, 1)`` of its
  flux (a linear ramp across the pixel: exact piecewise-linear cumulative sums, no loop over
  radii). Radii run up to the largest circle inside the stamp.
* **Petrosian radius.** With the SDSS annulus, η(r) = mean surface brightness in
  [0.8 r, 1.25 r] divided by the mean surface brightness inside r; ``r_petro`` is the first
  radius where η falls to 0.2 (linear interpolation). Not reached inside the stamp:
  ``no_petrosian_radius``.
* **R50, R90.** Total flux F_tot = F(min(2 r_petro, r_max)); R50 and R90 are the first radii
  where F reaches 50 % and 90 % of F_tot.
"""

from __future__ import annotations

from dataclasses import dataclass
from functools import lru_cache

import numpy as np
from scipy import ndimage

from ergo_ray.errors import BadObjectError
from ergo_ray.preprocess import reasons

__all__ = ["PetrosianResult", "central_box", "measure_petrosian", "sigma_clipped_stats"]

#: Petrosian ratio threshold η.
PETROSIAN_ETA = 0.2
#: SDSS annulus for the local surface brightness: [0.8 r, 1.25 r].
ANNULUS = (0.8, 1.25)
#: R50/R90 are measured inside this multiple of r_petro.
TOTAL_FLUX_FACTOR = 2.0
#: Grid step of the curve of growth in pixels (1 / step must be an integer).
GRID_STEP = 0.05

# 3x3 Gaussian with FWHM 3 px (sigma = 3 / 2.3548), separable, normalised.
_SIG = 3.0 / (2.0 * np.sqrt(2.0 * np.log(2.0)))
_K1 = np.exp(-0.5 * (np.arange(-1, 2) / _SIG) ** 2)
_K1 = (_K1 / _K1.sum()).astype(np.float32)
_STRUCT8 = np.ones((3, 3), dtype=bool)


@dataclass(frozen=True)
class PetrosianResult:
    """Radii of the central source, in pixels.

    Attributes
    ----------
    r50_px, r90_px, petro_r_px : float
        Half-light radius, 90 % light radius and Petrosian radius.
    x_c, y_c : float
        Centroid of the central source (column, row), in pixel-centre coordinates.
    total_flux : float
        Background-subtracted flux inside ``min(2 r_petro, r_max)``.
    """

    r50_px: float
    r90_px: float
    petro_r_px: float
    x_c: float
    y_c: float
    total_flux: float


def central_box(image: np.ndarray, box_px: int) -> np.ndarray:
    """Return the central ``box_px`` × ``box_px`` region of a 2-D (or ``(..., H, W)``) array.

    Parameters
    ----------
    image : numpy.ndarray
        Array whose last two axes are (H, W).
    box_px : int
        Side of the box; clipped to the image size.

    Returns
    -------
    numpy.ndarray
        A view of the central box.
    """
    h, w = image.shape[-2:]
    bh, bw = min(box_px, h), min(box_px, w)
    y0, x0 = h // 2 - bh // 2, w // 2 - bw // 2
    return image[..., y0 : y0 + bh, x0 : x0 + bw]


def sigma_clipped_stats(
    values: np.ndarray, sigma: float = 3.0, maxiters: int = 5
) -> tuple[float, float]:
    """Sigma-clipped median and standard deviation of a 1-D sample.

    Parameters
    ----------
    values : numpy.ndarray
        Finite values.
    sigma : float
        Clipping threshold in standard deviations about the median.
    maxiters : int
        Maximum number of clipping iterations.

    Returns
    -------
    tuple of float
        (median, std); NaN for an empty sample.
    """
    v = np.asarray(values, dtype=np.float64).ravel()
    if v.size == 0:
        return float("nan"), float("nan")
    for _ in range(maxiters):
        med = float(np.median(v))
        std = float(v.std())
        keep = np.abs(v - med) <= sigma * std
        if keep.all() or keep.sum() < 3:
            break
        v = v[keep]
    return float(np.median(v)), float(v.std())


def _smooth3(img: np.ndarray) -> np.ndarray:
    """Separable 3 × 3 Gaussian (FWHM 3 px) with edge replication."""
    p = np.pad(img, 1, mode="edge")
    a = _K1[0] * p[:, :-2] + _K1[1] * p[:, 1:-1] + _K1[2] * p[:, 2:]
    return _K1[0] * a[:-2] + _K1[1] * a[1:-1] + _K1[2] * a[2:]


@lru_cache(maxsize=32)
def _grid(h: int, w: int) -> tuple[np.ndarray, np.ndarray]:
    yy, xx = np.mgrid[0:h, 0:w]
    return yy.astype(np.float32), xx.astype(np.float32)


def _subsample(a: np.ndarray, limit: int = 16384) -> np.ndarray:
    """Return a strided subsample of a flat array with at most about ``limit`` values."""
    step = max(1, a.size // limit)
    return a[::step]


def _detect(
    band: np.ndarray, bad: np.ndarray, box_px: int, nsigma: float, min_area: int
) -> tuple[np.ndarray, int]:
    """Segment a band and return (labels, label of the central source)."""
    good = band[~bad]
    lo = float(np.median(good))
    cbox = central_box(np.where(bad, np.nan, band), box_px)
    cvals = cbox[np.isfinite(cbox)]
    hi = float(np.percentile(cvals, 99.0)) if cvals.size else float("nan")
    if not np.isfinite(hi) or hi <= lo:
        msg = "no flux above the stamp median in the central box"
        raise BadObjectError(msg, reason=reasons.NO_SOURCE)
    s = np.clip((band - lo) / (hi - lo), 0.0, 1.0).astype(np.float32)
    s[bad] = 0.0
    med, std = sigma_clipped_stats(_subsample(s[~bad]))
    thresh = med + nsigma * std
    det = _smooth3(s) > thresh
    det &= ~bad
    labels, n = ndimage.label(det, structure=_STRUCT8)
    if n == 0:
        msg = f"no source above {nsigma:g} sigma"
        raise BadObjectError(msg, reason=reasons.NO_SOURCE)
    areas = np.bincount(labels.ravel(), minlength=n + 1)
    small = areas < min_area
    small[0] = False
    if small.any():
        labels[small[labels]] = 0
    h, w = band.shape
    cy, cx = (h - 1) / 2.0, (w - 1) / 2.0
    lab = int(labels[int(round(cy)), int(round(cx))])
    if lab == 0:
        ys, xs = np.nonzero(labels)
        if ys.size == 0:
            msg = f"no source of at least {min_area} px above {nsigma:g} sigma"
            raise BadObjectError(msg, reason=reasons.NO_SOURCE)
        d2 = (ys - cy) ** 2 + (xs - cx) ** 2
        k = int(np.argmin(d2))
        half = box_px / 2.0
        if abs(ys[k] - cy) > half or abs(xs[k] - cx) > half:
            msg = f"no source inside the central {box_px}x{box_px} px"
            raise BadObjectError(msg, reason=reasons.NO_SOURCE)
        lab = int(labels[ys[k], xs[k]])
    return labels, lab


def _first_crossing(x: np.ndarray, y: np.ndarray, level: float, start: int = 0) -> float:
    """First x (linearly interpolated) at which y falls below (or rises above) ``level``.

    The direction is taken from ``y[start]``: if it is above the level, the first downward
    crossing is returned, otherwise the first upward crossing. NaN if there is none.
    """
    y = y[start:]
    x = x[start:]
    if y.size < 2:
        return float("nan")
    above = y >= level
    if not above[0]:
        idx = np.flatnonzero(above)
        if idx.size == 0:
            return float("nan")
    else:
        idx = np.flatnonzero(~above)
        if idx.size == 0:
            return float("nan")
    k = int(idx[0])
    if k == 0:
        return float(x[0])
    y0, y1 = y[k - 1], y[k]
    t = 0.0 if y1 == y0 else (level - y0) / (y1 - y0)
    return float(x[k - 1] + t * (x[k] - x[k - 1]))


def _curve_of_growth(
    flux: np.ndarray, dist: np.ndarray, r_max: float
) -> tuple[np.ndarray, np.ndarray]:
    """Cumulative flux F(r) on a grid of step GRID_STEP from 0 to r_max (linear pixel ramp)."""
    h = GRID_STEP
    inv = round(1.0 / h)
    n = int(np.floor(r_max / h)) + 1
    radii = np.arange(n, dtype=np.float64) * h
    a = dist.astype(np.float64) - 0.5
    f = flux.astype(np.float64)
    # Only pixels that can contribute within r_max.
    sel = a < r_max
    a, f = a[sel], f[sel]
    # Bin k holds pixels with a in (r_{k-1}, r_k]; a <= 0 falls in bin 0.
    idx = np.clip(np.ceil(a / h).astype(np.int64), 0, n - 1)
    g0 = np.cumsum(np.bincount(idx, weights=f, minlength=n))
    g1 = np.cumsum(np.bincount(idx, weights=f * a, minlength=n))
    ramp = radii * g0 - g1  # sum f * max(0, r - a)
    shifted = np.zeros(n)
    shifted[inv:] = ramp[:-inv]  # same at r - 1
    return radii, ramp - shifted


def measure_petrosian(
    band: np.ndarray,
    bad: np.ndarray | None = None,
    *,
    central_box_px: int = 20,
    detect_nsigma: float = 3.0,
    min_area_px: int = 16,
) -> PetrosianResult:
    """Measure r_petro, R50 and R90 of the central source of one band.

    Parameters
    ----------
    band : numpy.ndarray
        2-D image (H, W), background not necessarily subtracted.
    bad : numpy.ndarray, optional
        Boolean (H, W), True where a pixel is unusable; non-finite pixels are added.
    central_box_px : int
        Side of the central box used by the temporary stretch and the central-source search.
    detect_nsigma : float
        Detection threshold in sigma-clipped standard deviations.
    min_area_px : int
        Minimum segment area in pixels.

    Returns
    -------
    PetrosianResult
        The radii (pixels) and centroid.

    Raises
    ------
    BadObjectError
        With ``reason`` in :mod:`ergo_ray.preprocess.reasons` (``all_masked``, ``no_source``,
        ``no_petrosian_radius``, ``nonpositive_flux``, ``r50_not_finite``, ``r90_not_finite``).
    """
    band = np.asarray(band, dtype=np.float32)
    if band.ndim != 2 or min(band.shape) < 8:
        msg = f"expected a 2-D band of at least 8x8 px, got shape {band.shape}"
        raise BadObjectError(msg, reason=reasons.BAD_SHAPE)
    badm = ~np.isfinite(band)
    if bad is not None:
        badm |= bad
    if badm.all():
        msg = "every r-band pixel is masked or not finite"
        raise BadObjectError(msg, reason=reasons.ALL_MASKED)
    band = np.where(badm, np.float32(0), band) if badm.any() else band

    labels, lab = _detect(band, badm, central_box_px, detect_nsigma, min_area_px)

    # Background: sigma-clipped median of pixels outside every segment.
    sky = (labels == 0) & ~badm
    sky_vals = band[sky] if sky.any() else band[~badm]
    bkg, _ = sigma_clipped_stats(_subsample(sky_vals))
    img = band - np.float32(bkg)

    yy, xx = _grid(*band.shape)
    own = labels == lab
    w = np.clip(img[own], 0.0, None)
    if float(w.sum()) > 0:
        y_c = float((yy[own] * w).sum() / w.sum())
        x_c = float((xx[own] * w).sum() / w.sum())
    else:
        y_c, x_c = float(yy[own].mean()), float(xx[own].mean())
    dist = np.sqrt((yy - np.float32(y_c)) ** 2 + (xx - np.float32(x_c)) ** 2)

    # Mask neighbours and bad pixels; fill them with the mean of their 1-px annulus.
    masked = badm | ((labels != 0) & ~own)
    if masked.any():
        ring = dist.astype(np.int64)
        nr = int(ring.max()) + 1
        okr, okv = ring[~masked], img[~masked]
        cnt = np.bincount(okr, minlength=nr)
        tot = np.bincount(okr, weights=okv, minlength=nr)
        mean = np.divide(tot, cnt, out=np.zeros(nr), where=cnt > 0)
        img = img.copy()
        img[masked] = mean[ring[masked]].astype(np.float32)

    hgt, wid = band.shape
    r_edge = min(x_c + 0.5, wid - 0.5 - x_c, y_c + 0.5, hgt - 0.5 - y_c)
    r_max = r_edge - 0.5
    if r_max < 3.0:
        msg = f"the source centroid ({x_c:.1f}, {y_c:.1f}) is too close to the stamp edge"
        raise BadObjectError(msg, reason=reasons.NO_PETROSIAN_RADIUS)
    radii, cog = _curve_of_growth(img.ravel(), dist.ravel(), r_max)

    # Petrosian ratio on radii r where the outer annulus edge 1.25 r stays inside r_max.
    a_in, a_out = ANNULUS
    r_ok = radii[(radii >= 1.0) & (radii * a_out <= r_max)]
    if r_ok.size < 2:
        msg = "stamp too small for a Petrosian radius"
        raise BadObjectError(msg, reason=reasons.NO_PETROSIAN_RADIUS)
    f_in = np.interp(r_ok * a_in, radii, cog)
    f_out = np.interp(r_ok * a_out, radii, cog)
    f_r = np.interp(r_ok, radii, cog)
    sb_annulus = (f_out - f_in) / (np.pi * (a_out**2 - a_in**2) * r_ok**2)
    sb_mean = f_r / (np.pi * r_ok**2)
    with np.errstate(divide="ignore", invalid="ignore"):
        eta = np.where(sb_mean > 0, sb_annulus / sb_mean, np.nan)
    # The ratio starts near 1 at the centre; take the first fall below eta.
    eta_f = np.where(np.isfinite(eta), eta, -1.0)
    r_p = _first_crossing(r_ok, eta_f, PETROSIAN_ETA)
    if not np.isfinite(r_p) or eta_f[0] < PETROSIAN_ETA:
        msg = f"the Petrosian ratio does not fall to {PETROSIAN_ETA} inside {r_max:.1f} px"
        raise BadObjectError(msg, reason=reasons.NO_PETROSIAN_RADIUS)

    r_tot = min(TOTAL_FLUX_FACTOR * r_p, float(radii[-1]))
    f_tot = float(np.interp(r_tot, radii, cog))
    if not f_tot > 0:
        msg = f"non-positive flux {f_tot:.3g} inside 2 r_petro"
        raise BadObjectError(msg, reason=reasons.NONPOSITIVE_FLUX)
    rr = radii[radii <= r_tot + 1e-9]
    cc = cog[: rr.size]
    r50 = _first_crossing(rr, cc, 0.5 * f_tot)
    r90 = _first_crossing(rr, cc, 0.9 * f_tot)
    if not (np.isfinite(r50) and r50 > 0):
        msg = "no radius encloses half of the Petrosian flux"
        raise BadObjectError(msg, reason=reasons.R50_NOT_FINITE)
    if not (np.isfinite(r90) and r90 > 0):
        msg = "no radius encloses 90 % of the Petrosian flux"
        raise BadObjectError(msg, reason=reasons.R90_NOT_FINITE)
    return PetrosianResult(
        r50_px=r50, r90_px=r90, petro_r_px=r_p, x_c=x_c, y_c=y_c, total_flux=f_tot
    )
