"""GalSim renderer of one mock galaxy view into a g, r, i HSC-like cutout (recipe §6 steps 9–13).

Every light component of :class:`ergo_ray.mock.population.View` becomes a GalSim profile; the
host, its companion and the interloping galaxies are summed, convolved with a per-band Moffat PSF
and drawn once per band by FFT at 0.168″/px. Stars are the PSF itself. Noise: correlated sky
noise at HSC Wide depth, a residual sky offset and source Poisson noise
(:mod:`ergo_ray.mock.noise`). GalSim's C++ layer is not thread-safe: use one process per core.
"""

from __future__ import annotations

import os
from dataclasses import dataclass
from typing import Any

import numpy as np

from ergo_ray.io.cutout import Cutout
from ergo_ray.mock.noise import (
    DETECTED_BIT,
    GAIN_E_PER_UNIT,
    INTRP_BIT,
    SAT_BIT,
    SATURATION_LEVEL,
    correlated_noise,
    detection_mask,
)
from ergo_ray.mock.population import Component, Galaxy, View, draw_galaxy
from ergo_ray.types import PIXEL_SCALE_ARCSEC

__all__ = ["Rendered", "mock_object", "render_view"]

os.environ.setdefault("OMP_NUM_THREADS", "1")

_GSPARAMS: Any = None


def _galsim() -> Any:
    global _GSPARAMS
    import galsim

    if _GSPARAMS is None:
        _GSPARAMS = galsim.GSParams(folding_threshold=1e-2, maxk_threshold=2e-3,
                                    maximum_fft_size=2048)
    return galsim


@dataclass
class Rendered:
    """Pixels of one view.

    Attributes
    ----------
    image : numpy.ndarray
        float32 (3, H, W) g, r, i, ZP-27 units, noise included unless switched off.
    mask : numpy.ndarray
        int32 (3, H, W) HSC mask planes.
    variance : numpy.ndarray
        float32 (3, H, W).
    model : numpy.ndarray
        float32 (3, H, W) noise-free scene (host + companion + field).
    host_model : numpy.ndarray or None
        float32 (3, H, W) noise-free host alone (only when requested).
    """

    image: np.ndarray
    mask: np.ndarray
    variance: np.ndarray
    model: np.ndarray
    host_model: np.ndarray | None = None


def _profile(galsim: Any, c: Component, band: int, half_width: float,
             knot_seed: int) -> Any:
    flux = c.flux[band]
    gsp = _GSPARAMS
    if c.kind == "sersic":
        obj = galsim.Sersic(c.n, half_light_radius=c.hlr, flux=flux,
                            trunc=c.trunc * c.hlr if c.trunc else 0.0, gsparams=gsp)
    elif c.kind == "exponential":
        obj = galsim.Exponential(half_light_radius=c.hlr, flux=flux, gsparams=gsp)
    elif c.kind == "gaussian":
        obj = galsim.Gaussian(sigma=c.hlr, flux=flux, gsparams=gsp)
    elif c.kind == "knots":
        obj = galsim.RandomKnots(c.npoints, half_light_radius=c.hlr, flux=flux,
                                 rng=galsim.BaseDeviate(knot_seed), gsparams=gsp)
    else:  # pragma: no cover - guarded by the population model
        msg = f"unknown component kind {c.kind!r}"
        raise ValueError(msg)
    if c.q < 0.999:
        obj = obj.shear(q=max(c.q, 0.05), beta=c.beta_deg * galsim.degrees)
    if c.dx or c.dy:
        obj = obj.shift(c.dx * half_width, c.dy * half_width) if half_width else obj.shift(
            c.dx, c.dy)
    return obj


def render_view(galaxy: Galaxy, view: View, stamp_px: int, *, noise: bool = True,
                field: bool = True, host_only_model: bool = False) -> Rendered:
    """Render one view of a galaxy into g, r, i pixels.

    Parameters
    ----------
    galaxy : Galaxy
        The galaxy (for its domain's saturation behaviour).
    view : View
        The projection to draw (from ``galaxy.view(projection)``).
    stamp_px : int
        Stamp side in pixels.
    noise : bool
        Add sky, sky offset and source noise. ``False`` returns the noise-free model as image.
    field : bool
        Draw interlopers and stars.
    host_only_model : bool
        Also return the noise-free host (no companion, no field) in ``host_model``.

    Returns
    -------
    Rendered
        Image, mask, variance and the noise-free model.
    """
    galsim = _galsim()
    n = int(stamp_px)
    scale = PIXEL_SCALE_ARCSEC
    half = 0.5 * n * scale  # arcsec from centre to edge
    offset = galsim.PositionD(*view.offset_px)
    model = np.zeros((3, n, n), dtype=np.float64)
    host_model = np.zeros((3, n, n), dtype=np.float64) if host_only_model else None
    stars = [c for c in view.field if c.kind == "point"] if field else []
    gals = [c for c in view.field if c.kind != "point"] if field else []
    knot_seed = view.noise_seed % (2**31 - 1) + 1
    for b in range(3):
        psf = galsim.Moffat(beta=3.5, fwhm=view.psf_fwhm[b], trunc=4 * view.psf_fwhm[b],
                            gsparams=_GSPARAMS).shear(g1=view.psf_g[0], g2=view.psf_g[1])
        host = [_profile(galsim, c, b, 0.0, knot_seed) for c in view.host]
        scene = host + [_profile(galsim, c, b, 0.0, knot_seed) for c in view.companion]
        scene += [_profile(galsim, c, b, half * 0.92, knot_seed) for c in gals]
        img = galsim.ImageD(n, n, scale=scale)
        galsim.Convolve(galsim.Add(scene) if len(scene) > 1 else scene[0], psf,
                        gsparams=_GSPARAMS).drawImage(image=img, offset=offset)
        if host_model is not None:
            himg = galsim.ImageD(n, n, scale=scale)
            galsim.Convolve(galsim.Add(host) if len(host) > 1 else host[0], psf,
                            gsparams=_GSPARAMS).drawImage(image=himg, offset=offset)
            host_model[b] = himg.array
        for s in stars:
            pos = galsim.PositionD(view.offset_px[0] + s.dx * half * 0.92 / scale,
                                   view.offset_px[1] + s.dy * half * 0.92 / scale)
            psf.withFlux(s.flux[b]).drawImage(image=img, add_to_image=True, offset=pos,
                                              method="no_pixel")
        model[b] = img.array

    sigma = view.sigma
    mask = detection_mask(model, sigma)
    var = np.broadcast_to(np.asarray(sigma)[:, None, None] ** 2 * 0.8, model.shape).copy()
    var += np.clip(model, 0, None) / np.asarray(GAIN_E_PER_UNIT)[:, None, None]
    if noise:
        rng = np.random.default_rng(view.noise_seed)
        image = model + correlated_noise(rng, model.shape, sigma, view.noise_corr)
        image += np.asarray(view.sky_offset)[:, None, None]
        image += rng.standard_normal(model.shape) * np.sqrt(
            np.clip(model, 0, None) / np.asarray(GAIN_E_PER_UNIT)[:, None, None])
    else:
        image = model.copy()
    if galaxy.domain == "hsc" and view.saturated_star:
        sat = model > SATURATION_LEVEL
        if sat.any():
            sat = _bleed(sat)
            image[sat] = SATURATION_LEVEL
            mask[sat] |= np.int32((1 << SAT_BIT) | (1 << INTRP_BIT) | (1 << DETECTED_BIT))
    return Rendered(
        image=image.astype(np.float32), mask=mask.astype(np.int32),
        variance=var.astype(np.float32), model=model.astype(np.float32),
        host_model=None if host_model is None else host_model.astype(np.float32),
    )


def _bleed(sat: np.ndarray) -> np.ndarray:
    """Extend saturated regions along columns (charge bleeding), 1 px per 3 saturated px."""
    out = sat.copy()
    for b in range(sat.shape[0]):
        cols = np.nonzero(sat[b].any(axis=0))[0]
        for c in cols:
            rows = np.nonzero(sat[b, :, c])[0]
            ext = max(1, rows.size // 3)
            lo, hi = max(rows.min() - ext, 0), min(rows.max() + ext + 1, sat.shape[1])
            out[b, lo:hi, c] = True
    return out


def mock_object(domain: str, seed: int, index: int, projection: int, stamp_px: int,
                mass_mode: str = "balanced", *, noise: bool = True,
                field: bool = True) -> tuple[dict[str, Any], Cutout]:
    """Draw and render one projection of one mock galaxy.

    Parameters
    ----------
    domain : str
        ``tng100``, ``tng50``, ``eagle``, ``simba`` or ``hsc``.
    seed : int
        Survey seed.
    index : int
        Galaxy index in the survey.
    projection : int
        0–3; projections share the galaxy's truth and intrinsic structure.
    stamp_px : int
        Stamp side in pixels (e.g. 64 or 128).
    mass_mode : {"balanced", "population"}
        Stellar-mass sampling (see :func:`~ergo_ray.mock.population.draw_galaxy`).
    noise : bool
        Add noise (default). ``False`` gives the noise-free model, for tests.
    field : bool
        Draw interlopers and stars (default).

    Returns
    -------
    row : dict
        Catalogue row (contract columns, truth, ``struct_*``, ``i_mag``, ``ra``, ``dec``,
        ``snap``, ``is_etg``).
    cutout : Cutout
        g, r, i image, mask and variance; ``source`` is the ``object_id``.

    Raises
    ------
    ConfigError
        For an unknown domain or mass mode, a projection outside 0–3, or ``stamp_px < 16``.
    """
    from ergo_ray.errors import ConfigError

    if int(stamp_px) < 16:
        msg = f"stamp_px must be at least 16, got {stamp_px}"
        raise ConfigError(msg)
    gal = draw_galaxy(domain, seed, index, mass_mode)
    view = gal.view(projection)
    row = gal.row(projection)
    r = render_view(gal, view, stamp_px, noise=noise, field=field)
    cut = Cutout(image=r.image, mask=r.mask, variance=r.variance, source=row["object_id"])
    return row, cut
