"""The light components of one mock view, before PSF convolution, and the tidal features.

:class:`Component` is one profile; :class:`View` is one projection of a galaxy, all the
renderer (:mod:`ergo_ray.mock.render`) needs.
"""

from __future__ import annotations

import math
from dataclasses import dataclass

import numpy as np

__all__ = ["Component", "View", "band_fluxes", "tidal_components"]


@dataclass(frozen=True)
class Component:
    """One light component before PSF convolution (positions in arcsec, fluxes per band).

    Attributes
    ----------
    kind : str
        ``sersic``, ``exponential``, ``gaussian``, ``knots`` or ``point``.
    flux : tuple of float
        Flux in g, r, i (ZP-27 units).
    hlr : float
        Half-light radius, arcsec (sigma for ``gaussian``).
    n : float
        Sérsic index (``sersic`` only), quantised to 0.1.
    q : float
        Axis ratio.
    beta_deg : float
        Position angle of the major axis, degrees.
    dx, dy : float
        Offset from the stamp centre, arcsec.
    trunc : float
        Truncation radius in units of ``hlr`` (``sersic`` only; 0 = none).
    npoints : int
        Number of knots (``knots`` only).
    """

    kind: str
    flux: tuple[float, float, float]
    hlr: float
    n: float = 1.0
    q: float = 1.0
    beta_deg: float = 0.0
    dx: float = 0.0
    dy: float = 0.0
    trunc: float = 0.0
    npoints: int = 0


@dataclass(frozen=True)
class View:
    """One projection of a galaxy: everything the renderer needs, in arcsec and ZP-27 flux.

    Attributes
    ----------
    projection : int
        0–3.
    host : list of Component
        The galaxy (central body, halo, tidal features).
    companion : list of Component
        A companion (ongoing merger), possibly empty.
    field : list of Component
        Interlopers and stars (stars are ``point`` components).
    psf_fwhm : tuple of float
        Moffat FWHM per band, arcsec.
    psf_g : tuple of float
        PSF shear (g1, g2), shared by the bands.
    sigma : tuple of float
        Per-band sky noise σ (ZP-27 units) of this view.
    noise_corr : float
        Neighbour weight of the 3×3 correlation kernel.
    sky_offset : tuple of float
        Residual sky level per band, units.
    offset_px : tuple of float
        Sub-pixel centring offset.
    saturated_star : bool
        Whether a bright star in ``field`` saturates.
    struct : dict
        Projection-dependent ``struct_*`` values.
    noise_seed : int
        Seed for the pixel noise.
    """

    projection: int
    host: list[Component]
    companion: list[Component]
    field: list[Component]
    psf_fwhm: tuple[float, float, float]
    psf_g: tuple[float, float]
    sigma: tuple[float, float, float]
    noise_corr: float
    sky_offset: tuple[float, float, float]
    offset_px: tuple[float, float]
    saturated_star: bool
    struct: dict[str, float]
    noise_seed: int


def band_fluxes(f_i: float, gr: float, ri: float) -> tuple[float, float, float]:
    """Return (g, r, i) fluxes from the i flux and the g − r, r − i colours."""
    f_r = f_i * 10 ** (-0.4 * ri)
    f_g = f_r * 10 ** (-0.4 * gr)
    return (f_g, f_r, f_i)


def tidal_components(
    rng: np.random.Generator,
    kind: int,
    flux_i: float,
    colour: tuple[float, float],
    re: float,
    kpc: float,
    pa: float,
    width_mult: float,
) -> list[Component]:
    """Tails (kind 1), shells (2) or a thin stream (3) as chains of sheared Gaussians.

    Parameters
    ----------
    rng : numpy.random.Generator
        The view's generator.
    kind : int
        1 tails, 2 shells, 3 stream.
    flux_i : float
        Total i flux of the features (the result is renormalised to it).
    colour : tuple of float
        g − r and r − i.
    re : float
        Half-light radius of the host, arcsec.
    kpc : float
        kpc per arcsec.
    pa : float
        Position angle of the host, degrees.
    width_mult : float
        The domain's width multiplier.

    Returns
    -------
    list of Component
        Gaussian segments along the arcs.
    """
    width = float(rng.uniform(0.3, 1.0)) * width_mult / kpc  # arcsec
    width = max(width, 0.12)
    arcs, weights = _tidal_arcs(rng, kind, re, pa)
    if kind == 3:
        width *= 0.6
    sense = 1.0 if rng.uniform() < 0.5 else -1.0
    comps: list[Component] = []
    for arc, w in zip(arcs, weights, strict=True):
        comps += _arc_segments(arc, flux_i * w, colour, width, sense)
    return _renormalised(comps, flux_i)


def _tidal_arcs(
    rng: np.random.Generator, kind: int, re: float, pa: float
) -> tuple[list[tuple[float, float, float, float]], np.ndarray]:
    """Draw the arcs of the features and their flux weights (summing to 1).

    Each arc is (inner radius, outer radius, central angle, angular extent), arcsec and
    radians.
    """
    arcs: list[tuple[float, float, float, float]] = []
    if kind == 2:  # shells: 2–4 arcs at geometric radii, alternating sides of the major axis
        n_sh = int(rng.integers(2, 5))
        r0 = float(rng.uniform(1.8, 2.8)) * re
        for k in range(n_sh):
            r = r0 * 1.5**k
            ang = math.radians(pa) + (k % 2) * math.pi
            arcs.append((r, r, ang, math.radians(float(rng.uniform(80, 150)))))
        weights = np.array([1.0 / (k + 1) ** 0.5 for k in range(n_sh)])
    else:  # tails / streams: one or two arcs winding outwards
        n_arc = 2 if (kind == 1 and rng.uniform() < 0.5) else 1
        base = float(rng.uniform(0, 2 * math.pi))
        for k in range(n_arc):
            r_in = float(rng.uniform(1.0, 2.0)) * re
            r_out = float(rng.uniform(3.0, 6.5)) * re
            ext = math.radians(float(rng.uniform(40, 130)))
            arcs.append((r_in, r_out, base + k * math.pi, ext))
        weights = np.ones(n_arc)
    return arcs, weights / weights.sum()


def _arc_segments(
    arc: tuple[float, float, float, float],
    flux_i: float,
    colour: tuple[float, float],
    width: float,
    sense: float,
) -> list[Component]:
    """Lay ten sheared Gaussian segments along one arc, carrying about ``flux_i`` in i."""
    r_in, r_out, centre, extent = arc
    r_in, r_out = min(r_in, 4.5), min(r_out, 4.8)
    n_seg = 10
    arc_len = 0.5 * (r_in + r_out) * extent + (r_out - r_in)
    # Gaussian segments: σ across the arc = width, σ along it ~ the segment spacing
    seg_len = max(0.75 * arc_len / n_seg, width)
    comps = []
    for j in range(n_seg):
        t = (j + 0.5) / n_seg - 0.5
        phi = centre + sense * t * extent
        radius = r_in + (r_out - r_in) * (t + 0.5)
        # tails fade towards their tip; shells are brightest at their centre
        taper = math.exp(-0.5 * (2.2 * t) ** 2) if r_in == r_out else 1.2 - (t + 0.5)
        dx, dy = radius * math.cos(phi), radius * math.sin(phi)
        comps.append(
            Component(
                "gaussian",
                band_fluxes(flux_i * taper, *colour),
                math.sqrt(width * seg_len),
                q=width / seg_len,
                beta_deg=math.degrees(phi) + 90.0,
                dx=dx,
                dy=dy,
            )
        )
    return comps


def _renormalised(comps: list[Component], flux_i: float) -> list[Component]:
    """Scale the components so that together they carry exactly ``flux_i`` in i."""
    tot = sum(c.flux[2] for c in comps)
    if tot <= 0:
        return comps
    s = flux_i / tot
    return [
        Component(
            c.kind,
            (c.flux[0] * s, c.flux[1] * s, c.flux[2] * s),
            c.hlr,
            q=c.q,
            beta_deg=c.beta_deg,
            dx=c.dx,
            dy=c.dy,
        )
        for c in comps
    ]
