"""Petrosian radii (r_petro, R50, R90) of the central galaxy of one band.

Definitions (method.md §2.1; documented here because they fix what ``r90_px`` means):

* **Detection.** The central source, the other segments and the cores of the neighbours
  blended with it come from :mod:`ergo_ray.preprocess.detection` (its definitions).
* **Centre.** The flux-weighted centroid of the central source's pixels.
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

from ergo_ray.errors import BadObjectError
from ergo_ray.preprocess import reasons
from ergo_ray.preprocess.detection import detect_central_source
from ergo_ray.preprocess.stats import sigma_clipped_stats, subsample

__all__ = ["PetrosianResult", "measure_petrosian"]

#: Petrosian ratio threshold η.
PETROSIAN_ETA = 0.2
#: SDSS annulus for the local surface brightness: [0.8 r, 1.25 r].
ANNULUS = (0.8, 1.25)
#: R50/R90 are measured inside this multiple of r_petro.
TOTAL_FLUX_FACTOR = 2.0
#: A neighbour core is cut at its split level: its second moments are scaled up by this.
FOOTPRINT_MOMENT_SCALE = 2.0
#: Grid step of the curve of growth in pixels (1 / step must be an integer).
GRID_STEP = 0.05
#: The curve of growth is first measured within this radius of the centre (px).
WINDOW_RADIUS_PX = 48.0


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


@lru_cache(maxsize=32)
def _grid(h: int, w: int) -> tuple[np.ndarray, np.ndarray]:
    yy, xx = np.mgrid[0:h, 0:w]
    return yy.astype(np.float32), xx.astype(np.float32)


def _ring_mean(img: np.ndarray, ring: np.ndarray, use: np.ndarray, nr: int) -> np.ndarray:
    """Mean of ``img`` over the ``use`` pixels of each 1-px ring (0 where a ring is empty)."""
    ring, use = ring.ravel(), use.ravel()
    cnt = np.bincount(ring, weights=use, minlength=nr)
    tot = np.bincount(ring, weights=np.where(use, img.ravel(), 0.0), minlength=nr)
    return np.divide(tot, cnt, out=np.zeros(nr), where=cnt > 0)


def _neighbour_footprints(
    img: np.ndarray, neighbours: np.ndarray, ring: np.ndarray, profile: np.ndarray,
    floor: float,
) -> np.ndarray:
    """Pixels where a blended neighbour outshines the central galaxy.

    Each neighbour core gets an elliptical exponential model (SExtractor uses Gaussians, whose
    wings are too light) from its light in excess of the galaxy's ring-mean ``profile``: that
    flux and its second moments (scaled by ``FOOTPRINT_MOMENT_SCALE`` because the core is cut
    at a level). Its footprint is the core plus every pixel where the model exceeds both the
    galaxy profile and ``floor``.
    """
    out = neighbours > 0
    yy, xx = _grid(*img.shape)
    galaxy = np.maximum(profile[ring], floor)
    for c in range(1, int(neighbours.max()) + 1):
        cy, cx = np.nonzero(neighbours == c)
        if cy.size == 0:
            continue
        w = np.clip(img[cy, cx] - profile[ring[cy, cx]], 0.0, None).astype(np.float64)
        flux = float(w.sum())
        if flux <= 0:
            continue
        my, mx = float((cy * w).sum() / flux), float((cx * w).sum() / flux)
        dy, dx = cy - my, cx - mx
        k = FOOTPRINT_MOMENT_SCALE
        syy = k * float((dy * dy * w).sum() / flux) + 0.25
        sxx = k * float((dx * dx * w).sum() / flux) + 0.25
        sxy = k * float((dx * dy * w).sum() / flux)
        # Exponential profile with these second moments (per axis <x^2> = 3 h^2): its
        # wings are closer to a star's or a galaxy's than a Gaussian's.
        syy, sxx, sxy = syy / 3.0, sxx / 3.0, sxy / 3.0
        det = max(syy * sxx - sxy * sxy, 1e-6)
        py, px = yy - my, xx - mx
        q = (sxx * py * py - 2 * sxy * px * py + syy * px * px) / det
        model = flux / (2 * np.pi * np.sqrt(det)) * np.exp(-np.sqrt(q))
        out |= model > galaxy
    return out


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
    a = dist.astype(np.float64)
    a -= 0.5
    # Bin k holds pixels with a in (r_{k-1}, r_k]; a <= 0 falls in bin 0. Pixels that
    # cannot contribute within r_max (a >= r_max) go to an overflow bin n, dropped.
    idx = a / h
    np.ceil(idx, out=idx)
    idx[a >= r_max] = n
    idx = np.clip(idx, 0, n, out=idx).astype(np.intp)
    a *= flux
    g0 = np.cumsum(np.bincount(idx, weights=flux, minlength=n + 1)[:n])
    g1 = np.cumsum(np.bincount(idx, weights=a, minlength=n + 1)[:n])
    ramp = radii * g0 - g1  # sum f * max(0, r - a)
    shifted = np.zeros(n)
    shifted[inv:] = ramp[:-inv]  # same at r - 1
    return radii, ramp - shifted


def _petrosian_profile(
    img: np.ndarray,
    masked: np.ndarray,
    neighbours: np.ndarray,
    core: np.ndarray,
    y_c: float,
    x_c: float,
    floor: float,
    r_cut: float,
    r_max: float,
) -> tuple[np.ndarray, np.ndarray, float] | None:
    """Curve of growth of the masked and filled image and the Petrosian radius.

    Only the pixels within ``r_cut + 2`` of the centre are used, so the 1-px rings that fill
    the masked pixels within ``r_cut`` are complete and the curve of growth up to ``r_cut``
    equals the whole stamp's. With ``r_cut < r_max``, None is returned when that window does
    not settle the result (a neighbour core reaching outside it, η not falling to
    ``PETROSIAN_ETA`` within it, or ``TOTAL_FLUX_FACTOR × r_petro`` beyond it).

    Returns
    -------
    radii, cog : numpy.ndarray
        Radii from 0 to ``r_cut`` (step ``GRID_STEP``) and F(r).
    r_petro : float
        The Petrosian radius.

    Raises
    ------
    BadObjectError
        ``no_petrosian_radius`` when ``r_cut == r_max`` and there is none.
    """
    whole = r_cut >= r_max
    win = _window(img.shape, y_c, x_c, None if whole else r_cut + 2.0)
    img, masked, nbs, core = img[win], masked[win], neighbours[win], core[win]
    dy2 = (np.arange(win[0].start, win[0].stop, dtype=np.float32) - np.float32(y_c)) ** 2
    dx2 = (np.arange(win[1].start, win[1].stop, dtype=np.float32) - np.float32(x_c)) ** 2
    dist = np.sqrt(dy2[:, None] + dx2[None, :])
    ring = dist.astype(np.intp)
    nr = int(ring.max()) + 1

    if nbs.any() or (not whole and neighbours.any()):
        if not whole:
            # A neighbour's model needs all of its core, on complete rings.
            inside = np.count_nonzero(nbs[dist < r_cut + 1.0])
            if inside != np.count_nonzero(neighbours):
                return None
        masked = masked | (nbs > 0)
        profile = _ring_mean(img, ring, ~masked, nr)
        masked |= _neighbour_footprints(img, nbs, ring, profile, floor) & ~core
    if masked.any():
        fill = _ring_mean(img, ring, ~masked, nr)
        img = img.copy()
        img[masked] = fill[ring[masked]].astype(np.float32)
    radii, cog = _curve_of_growth(img.ravel(), dist.ravel(), r_cut)
    r_p = _petrosian_radius(radii, cog, r_cut, r_max)
    if r_p is None or (not whole and TOTAL_FLUX_FACTOR * r_p > radii[-1]):
        return None
    return radii, cog, r_p


def _window(
    shape: tuple[int, ...], y_c: float, x_c: float, half: float | None
) -> tuple[slice, slice]:
    """Slices of the box within ``half`` px of the centre (the whole image when None)."""
    h, w = shape
    if half is None:
        return np.s_[0:h, 0:w]
    y0, y1 = max(0, int(np.floor(y_c - half))), min(h, int(np.ceil(y_c + half)) + 1)
    x0, x1 = max(0, int(np.floor(x_c - half))), min(w, int(np.ceil(x_c + half)) + 1)
    return np.s_[y0:y1, x0:x1]


def _petrosian_radius(
    radii: np.ndarray, cog: np.ndarray, r_cut: float, r_max: float
) -> float | None:
    """First radius where η falls to ``PETROSIAN_ETA``; None if not settled within ``r_cut``.

    Raises
    ------
    BadObjectError
        ``no_petrosian_radius`` when ``r_cut`` is the whole stamp's ``r_max`` and there is none.
    """
    whole = r_cut >= r_max
    # Petrosian ratio on radii r where the outer annulus edge 1.25 r stays inside r_cut.
    a_in, a_out = ANNULUS
    r_ok = radii[(radii >= 1.0) & (radii * a_out <= r_cut)]
    if r_ok.size < 2:
        if not whole:
            return None
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
        if not whole:
            return None
        msg = f"the Petrosian ratio does not fall to {PETROSIAN_ETA} inside {r_max:.1f} px"
        raise BadObjectError(msg, reason=reasons.NO_PETROSIAN_RADIUS)
    return r_p


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
    band, badm = _usable(band, bad)
    core, segments, neighbours, detected = detect_central_source(
        band, badm, central_box_px, detect_nsigma, min_area_px
    )

    # Background and noise: sigma-clipped statistics of pixels outside every segment.
    sky = ~(detected | badm)
    sky_vals = band[sky] if np.count_nonzero(sky) >= 16 else band[~badm]
    bkg, noise = sigma_clipped_stats(subsample(sky_vals))
    img = band - np.float32(bkg)

    y_c, x_c = _centroid(img, core)
    hgt, wid = band.shape
    r_edge = min(x_c + 0.5, wid - 0.5 - x_c, y_c + 0.5, hgt - 0.5 - y_c)
    r_max = r_edge - 0.5
    if r_max < 3.0:
        msg = f"the source centroid ({x_c:.1f}, {y_c:.1f}) is too close to the stamp edge"
        raise BadObjectError(msg, reason=reasons.NO_PETROSIAN_RADIUS)

    # Mask bad pixels, other segments and blended neighbours; fill with the ring mean. Most
    # galaxies are done within WINDOW_RADIUS_PX of the centre; the rest use the whole stamp.
    masked = badm | segments
    floor = noise if np.isfinite(noise) else 0.0
    args = (img, masked, neighbours, core, y_c, x_c, floor)
    found = _petrosian_profile(*args, WINDOW_RADIUS_PX, r_max) if r_max > WINDOW_RADIUS_PX else None
    radii, cog, r_p = found if found is not None else _petrosian_profile(*args, r_max, r_max)
    r50, r90, f_tot = _light_radii(radii, cog, r_p, r_max)
    return PetrosianResult(
        r50_px=r50, r90_px=r90, petro_r_px=r_p, x_c=x_c, y_c=y_c, total_flux=f_tot
    )


def _usable(band: np.ndarray, bad: np.ndarray | None) -> tuple[np.ndarray, np.ndarray]:
    """Check a band; return it as float32 with unusable pixels set to 0, and their mask."""
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
    return band, badm


def _centroid(img: np.ndarray, core: np.ndarray) -> tuple[float, float]:
    """Flux-weighted centroid (row, column) of the core's pixels (plain mean without flux)."""
    yy, xx = _grid(*img.shape)
    w = np.clip(img[core], 0.0, None)
    if float(w.sum()) > 0:
        y_c = float((yy[core] * w).sum() / w.sum())
        x_c = float((xx[core] * w).sum() / w.sum())
    else:
        y_c, x_c = float(yy[core].mean()), float(xx[core].mean())
    return y_c, x_c


def _light_radii(
    radii: np.ndarray, cog: np.ndarray, r_p: float, r_max: float
) -> tuple[float, float, float]:
    """R50, R90 and the total flux F(min(2 r_petro, r_max)) from the curve of growth."""
    r_last = np.floor(r_max / GRID_STEP) * GRID_STEP  # the last radius of the whole stamp
    r_tot = min(TOTAL_FLUX_FACTOR * r_p, float(r_last))
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
    return r50, r90, f_tot
