"""GalSim renderer of one mock galaxy view into a g, r, i HSC-like cutout (recipe §6 steps 9–13).

Every light component of :class:`ergo_ray.mock.population.View` becomes a GalSim profile
(Sérsic with n quantised to 0.1 and fixed truncation so GalSim's profile cache is reused,
exponential disks, random knots, Gaussian chains for tidal arcs). Components that share a colour
are drawn once in k space at unit i-band flux (``drawKImage``) on a box of stamp + 32 px at
0.168″/px; each band is then the flux-weighted sum times that band's Moffat PSF (β = 3.5),
the pixel response and the sub-pixel offset, brought back to real space by one numpy inverse
FFT. The three bands thus share the expensive profile evaluations. Stars are drawn in real
space (3× oversampled), so saturated stars do not ring. Noise: correlated sky noise at HSC Wide
depth, a residual sky offset and source Poisson noise (:mod:`ergo_ray.mock.noise`).

GalSim's C++ layer is not thread-safe: use one process per core. The first call sets GalSim's
OpenMP threads to 1 for the process.
"""

from __future__ import annotations

import math
from dataclasses import dataclass, replace
from functools import lru_cache
from typing import Any

import numpy as np

from ergo_ray.io.cutout import Cutout
from ergo_ray.mock.components import Component, View
from ergo_ray.mock.noise import (
    DETECTED_BIT,
    GAIN_E_PER_UNIT,
    INTRP_BIT,
    SAT_BIT,
    SATURATION_LEVEL,
    correlated_noise,
    detection_mask,
)
from ergo_ray.mock.population import Galaxy, draw_galaxy
from ergo_ray.types import PIXEL_SCALE_ARCSEC

__all__ = ["Rendered", "mock_object", "render_view"]


_GSPARAMS: Any = None


def _galsim() -> Any:
    global _GSPARAMS
    import galsim

    if _GSPARAMS is None:
        # GalSim's C++ layer is not thread-safe and its OpenMP can hang forked children:
        # one process per core, one thread each (research §5).
        galsim.utilities.set_omp_threads(1)
        _GSPARAMS = galsim.GSParams(
            folding_threshold=1e-2, maxk_threshold=2e-3, maximum_fft_size=2048
        )
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


@lru_cache(maxsize=512)
def _base(kind: str, n: float, trunc: float) -> Any:
    """Unit-flux, unit-size profile; GalSim caches its k-space extent on the instance."""
    galsim = _galsim()
    gsp = _GSPARAMS
    if kind == "sersic":
        return galsim.Sersic(n, half_light_radius=1.0, trunc=trunc, gsparams=gsp)
    if kind == "exponential":
        return galsim.Exponential(half_light_radius=1.0, gsparams=gsp)
    if kind == "gaussian":
        return galsim.Gaussian(sigma=1.0, gsparams=gsp)
    if kind == "moffat":
        return galsim.Moffat(beta=3.5, fwhm=1.0, trunc=trunc, gsparams=gsp)
    msg = f"unknown component kind {kind!r}"
    raise ValueError(msg)


def _profile(
    galsim: Any, c: Component, band: int, half_width: float, knot_seed: int
) -> Any:
    flux = c.flux[band]
    if c.kind == "knots":
        obj = galsim.RandomKnots(
            c.npoints,
            half_light_radius=c.hlr,
            flux=flux,
            rng=galsim.BaseDeviate(knot_seed),
            gsparams=_GSPARAMS,
        )
    else:
        base = _base(
            c.kind,
            c.n if c.kind == "sersic" else 0.0,
            c.trunc if c.kind == "sersic" else 0.0,
        )
        obj = base.dilate(c.hlr).withFlux(flux)
    if c.q < 0.999:
        obj = obj.shear(q=max(c.q, 0.05), beta=c.beta_deg * galsim.degrees)
    if c.dx or c.dy:
        scale = half_width if half_width else 1.0
        obj = obj.shift(c.dx * scale, c.dy * scale)
    return obj


def _good_size(m: int) -> int:
    """Smallest even 2^a 3^b 5^c ≥ m (fast FFT sizes)."""
    while True:
        x = m
        for p in (2, 3, 5):
            while x % p == 0:
                x //= p
        if x == 1 and m % 2 == 0:
            return m
        m += 1


@lru_cache(maxsize=16)
def _grid(stamp_px: int) -> tuple[int, float, np.ndarray, float]:
    """FFT box (stamp + 32 px), k spacing, k axis and the usable radius (arcsec)."""
    nfft = _good_size(int(stamp_px) + 32)
    dk = 2 * np.pi / (nfft * PIXEL_SCALE_ARCSEC)
    k1 = (np.arange(nfft) - nfft // 2) * dk
    box_r = (nfft // 2 - 2) * PIXEL_SCALE_ARCSEC
    return nfft, dk, k1, box_r


def _to_real(fk: np.ndarray, nfft: int) -> np.ndarray:
    """Centred k-images (..., N, N), Hermitian → centred real images."""
    half = np.fft.ifftshift(fk, axes=(-2, -1))[..., : nfft // 2 + 1]
    real = np.fft.irfft2(half, s=(nfft, nfft), axes=(-2, -1))
    return np.fft.fftshift(real, axes=(-2, -1))


def _combine(
    items: list[tuple[tuple[float, float, float], np.ndarray]], nfft: int
) -> np.ndarray:
    """Per-band weighted sum of k-images → (3, N, N)."""
    if not items:
        return np.zeros((3, nfft, nfft), dtype=np.complex128)
    out = np.zeros((3, nfft, nfft), dtype=np.complex128)
    for flux, k in items:
        for b in range(3):
            out[b] += flux[b] * k
    return out


def _group_kimages(
    galsim: Any,
    comps: list[Component],
    nfft: int,
    dk: float,
    half_width: float,
    box_r: float,
    knot_seed: int,
) -> list[tuple[tuple[float, float, float], np.ndarray]]:
    """K-images of components grouped by colour, drawn once at unit i-band flux.

    Returns a list of (per-band flux multipliers, k-image) pairs.
    """
    groups: dict[tuple[float, float], list[Component]] = {}
    for c in comps:
        if c.flux[2] <= 0:
            continue
        key = (round(c.flux[0] / c.flux[2], 9), round(c.flux[1] / c.flux[2], 9))
        groups.setdefault(key, []).append(c)
    out = []
    for (rg, rr), members in groups.items():
        objs = []
        for c in members:
            if c.kind == "sersic" and c.trunc and c.trunc * c.hlr > box_r:
                # keep the truncation inside the FFT box (quantised for GalSim's cache)
                c = replace(c, trunc=max(1.5, math.floor(4 * box_r / c.hlr) / 4))
            objs.append(_profile(galsim, c, 2, half_width, knot_seed))
        obj = galsim.Add(objs) if len(objs) > 1 else objs[0]
        k = obj.drawKImage(nx=nfft, ny=nfft, scale=dk).array
        out.append(((rg, rr, 1.0), k))
    return out


def _draw_star(galsim: Any, view: View, band: int, flux: float,
               pos: tuple[float, float], n: int) -> np.ndarray:
    """Draw a star in real space (3× oversampled, binned): no ringing around bright stars."""
    ovs = 3
    psf = (
        _base("moffat", 0.0, 0.0)
        .dilate(view.psf_fwhm[band])
        .shear(g1=view.psf_g[0], g2=view.psf_g[1])
        .withFlux(flux)
    )
    img = galsim.ImageD(n * ovs, n * ovs, scale=PIXEL_SCALE_ARCSEC / ovs)
    psf.drawImage(image=img, method="no_pixel", offset=(ovs * pos[0], ovs * pos[1]))
    return img.array.reshape(n, ovs, n, ovs).sum(axis=(1, 3))


def _transfer(view: View, n: int, nfft: int, dk: float, k1: np.ndarray) -> np.ndarray:
    """Return the (3, nfft, nfft) Fourier transfer function: PSF, pixel and sub-pixel shift."""
    scale = PIXEL_SCALE_ARCSEC
    # GalSim's convention: an even stamp's centre lies between pixels.
    shift_px = [o - (0.5 if n % 2 == 0 else 0.0) for o in view.offset_px]
    ex = np.exp(-1j * k1 * shift_px[0] * scale) * np.sinc(k1 * scale / (2 * np.pi))
    ey = np.exp(-1j * k1 * shift_px[1] * scale) * np.sinc(k1 * scale / (2 * np.pi))
    base = ey[:, None] * ex[None, :]
    tf = np.empty((3, nfft, nfft), dtype=np.complex128)
    for b in range(3):
        psf = (
            _base("moffat", 0.0, 0.0)
            .dilate(view.psf_fwhm[b])
            .shear(g1=view.psf_g[0], g2=view.psf_g[1])
        )
        tf[b] = psf.drawKImage(nx=nfft, ny=nfft, scale=dk).array
    tf *= base
    return tf


def render_view(
    galaxy: Galaxy,
    view: View,
    stamp_px: int,
    *,
    noise: bool = True,
    field: bool = True,
    host_only_model: bool = False,
) -> Rendered:
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
    model, host_model = _draw_model(view, int(stamp_px), field, host_only_model)
    image, mask, var = _observe(galaxy, view, model, noise)
    return Rendered(
        image=image.astype(np.float32),
        mask=mask.astype(np.int32),
        variance=var.astype(np.float32),
        model=model.astype(np.float32),
        host_model=None if host_model is None else host_model.astype(np.float32),
    )


def _draw_model(
    view: View, n: int, field: bool, host_only_model: bool
) -> tuple[np.ndarray, np.ndarray | None]:
    """Return the noise-free (3, n, n) model of a view and, on request, of its host alone."""
    galsim = _galsim()
    scale = PIXEL_SCALE_ARCSEC
    nfft, dk, k1, box_r = _grid(n)
    half = 0.5 * n * scale  # arcsec from the centre to the stamp edge
    knot_seed = view.noise_seed % (2**31 - 1) + 1

    field_gals = [c for c in view.field if c.kind != "point"] if field else []
    stars = [c for c in view.field if c.kind == "point"] if field else []
    host_k = _group_kimages(galsim, view.host, nfft, dk, 0.0, box_r, knot_seed)
    other_k = _group_kimages(
        galsim, list(view.companion), nfft, dk, 0.0, box_r, knot_seed
    )
    other_k += _group_kimages(
        galsim, field_gals, nfft, dk, half * 0.92, box_r, knot_seed
    )
    lo = nfft // 2 - n // 2
    tf = _transfer(view, n, nfft, dk, k1)
    f_host = _combine(host_k, nfft)
    f_all = f_host + _combine(other_k, nfft)
    model = _to_real(f_all * tf, nfft)[:, lo : lo + n, lo : lo + n]
    for star in stars:
        pos = (
            view.offset_px[0] + star.dx * half * 0.92 / scale,
            view.offset_px[1] + star.dy * half * 0.92 / scale,
        )
        for b in range(3):
            model[b] += _draw_star(galsim, view, b, star.flux[b], pos, n)
    host_model = (
        _to_real(f_host * tf, nfft)[:, lo : lo + n, lo : lo + n]
        if host_only_model
        else None
    )
    return model, host_model


def _observe(
    galaxy: Galaxy, view: View, model: np.ndarray, noise: bool
) -> tuple[np.ndarray, np.ndarray, np.ndarray]:
    """Return the image, mask and variance of a model: noise, detection and saturation."""
    sigma = view.sigma
    mask = detection_mask(model, sigma)
    var = np.broadcast_to(
        np.asarray(sigma)[:, None, None] ** 2 * 0.8, model.shape
    ).copy()
    var += np.clip(model, 0, None) / np.asarray(GAIN_E_PER_UNIT)[:, None, None]
    if noise:
        rng = np.random.default_rng(view.noise_seed)
        image = model + correlated_noise(rng, model.shape, sigma, view.noise_corr)
        image += np.asarray(view.sky_offset)[:, None, None]
        image += rng.standard_normal(model.shape) * np.sqrt(
            np.clip(model, 0, None) / np.asarray(GAIN_E_PER_UNIT)[:, None, None]
        )
    else:
        image = model.copy()
    if galaxy.domain == "hsc" and view.saturated_star:
        sat = model > SATURATION_LEVEL
        if sat.any():
            sat = _bleed(sat)
            image[sat] = SATURATION_LEVEL
            mask[sat] |= np.int32(
                (1 << SAT_BIT) | (1 << INTRP_BIT) | (1 << DETECTED_BIT)
            )
    return image, mask, var

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


def mock_object(
    domain: str,
    seed: int,
    index: int,
    projection: int,
    stamp_px: int,
    mass_mode: str = "balanced",
    *,
    noise: bool = True,
    field: bool = True,
) -> tuple[dict[str, Any], Cutout]:
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
    cut = Cutout(
        image=r.image, mask=r.mask, variance=r.variance, source=row["object_id"]
    )
    return row, cut
