"""One projection of a mock galaxy: orientation, tidal geometry, companion, field, PSF, noise.

:func:`galaxy_view` draws from ``default_rng([domain_code, seed, index, 1 + projection])``;
the helpers below take that generator in turn, in a fixed order, so a view is the same in
every process.
"""

from __future__ import annotations

import math
from typing import TYPE_CHECKING, Any

import numpy as np

from ergo_ray.errors import ConfigError
from ergo_ray.mock.components import Component, View, band_fluxes, tidal_components
from ergo_ray.mock.domains import DOMAIN_CODES, DOMAIN_SHIFTS, DomainShift
from ergo_ray.mock.relations import SKY_SIGMA, cww_colours, quantise_sersic
from ergo_ray.types import PSF_FWHM_ARCSEC, ZERO_POINT

if TYPE_CHECKING:
    from ergo_ray.mock.population import Galaxy

__all__ = ["galaxy_view"]

Colours = dict[str, tuple[float, float]]


def galaxy_view(galaxy: Galaxy, projection: int) -> View:
    """Return one projection: orientation, tidal geometry, PSF, noise and field objects.

    Parameters
    ----------
    galaxy : Galaxy
        The galaxy (:func:`~ergo_ray.mock.population.draw_galaxy`).
    projection : int
        0–3.

    Returns
    -------
    View
        Deterministic in ``(domain, seed, index, projection)``.

    Raises
    ------
    ConfigError
        If ``projection`` is not in 0–3.
    """
    if not 0 <= int(projection) <= 3:
        msg = f"projection must be 0-3, got {projection}"
        raise ConfigError(msg)
    shift = DOMAIN_SHIFTS[galaxy.domain]
    lat = galaxy.latents
    rng = np.random.default_rng(
        [DOMAIN_CODES[galaxy.domain], galaxy.seed, galaxy.index, 1 + int(projection)]
    )
    kpc = lat["kpc_per_arcsec"]
    f_tot = 10 ** (-0.4 * (galaxy.i_mag - ZERO_POINT))
    re = lat["re_arcsec"]
    pa = float(rng.uniform(0, 180))
    cos_i = float(rng.uniform(0, 1))
    st: dict[str, float] = {"pa_deg": pa, "cos_incl": cos_i}

    halo_f = lat["halo_frac"]
    tidal_f_int = lat["tidal_frac"]
    # Tidal features fade with projection: seen edge-on to their plane they are brighter.
    proj_vis = float(rng.uniform(0.35, 1.0)) if tidal_f_int > 0 else 0.0
    tidal_f = tidal_f_int * proj_vis
    body_f = f_tot * (1.0 - halo_f - tidal_f)
    col = galaxy.colours

    host, st["q"] = _central_body(lat, col, galaxy.is_etg, body_f, pa, cos_i)
    if halo_f > 0:
        host.append(_halo(rng, lat, col, f_tot * halo_f, re, pa, cos_i))
    # tidal features: chains of elongated Gaussians along arcs, drawn in projection
    kind = int(lat["tidal_kind"])
    if tidal_f > 0 and kind > 0:
        host.extend(
            tidal_components(
                rng, kind, f_tot * tidal_f, col["halo"], re, kpc, pa, shift.tidal_width
            )
        )
    st["tidal_flux"] = tidal_f
    st["tidal_visibility"] = proj_vis

    companion, st["companion_sep_arcsec"] = _companion(rng, lat, col, f_tot, kpc, shift)
    fld, n_int, n_star, saturated = _field(rng, shift)
    st["n_interlopers"] = float(n_int)
    st["n_stars"] = float(n_star + saturated)

    conditions = _conditions(rng, shift, st)
    return View(
        projection=int(projection),
        host=host,
        companion=companion,
        field=fld,
        saturated_star=saturated,
        struct=st,
        **conditions,
        noise_seed=int(rng.integers(2**62)),
    )


def _conditions(
    rng: np.random.Generator, shift: DomainShift, st: dict[str, float]
) -> dict[str, Any]:
    """Draw the PSF, noise and sub-pixel offset of a view (recorded in ``st`` too).

    Returns
    -------
    dict
        ``psf_fwhm``, ``psf_g``, ``sigma``, ``noise_corr``, ``sky_offset``, ``offset_px``:
        the :class:`View` fields they fill.
    """
    fwhm = tuple(
        float(PSF_FWHM_ARCSEC[b] * np.clip(1 + rng.normal(0, shift.psf_scatter), 0.6, 1.8))
        for b in ("g", "r", "i")
    )
    e = rng.normal(0, 0.015, 2)
    depth = float(rng.uniform(0.85, 1.2))
    sigma = tuple(SKY_SIGMA[b] * depth for b in ("g", "r", "i"))
    sky = tuple(float(rng.normal(0, 0.1 * s)) for s in sigma)
    off_px = tuple(float(v) for v in rng.uniform(-0.5, 0.5, 2))
    st.update(
        {"psf_fwhm_g": fwhm[0], "psf_fwhm_r": fwhm[1], "psf_fwhm_i": fwhm[2],
         "noise_depth": depth}
    )
    return {
        "psf_fwhm": fwhm,
        "psf_g": (float(e[0]), float(e[1])),
        "sigma": sigma,
        "noise_corr": shift.noise_corr,
        "sky_offset": sky,
        "offset_px": off_px,
    }


def _central_body(
    lat: dict[str, float], col: Colours, is_etg: bool, body_f: float, pa: float, cos_i: float
) -> tuple[list[Component], float]:
    """Return the spheroid (ETG) or bulge + disk + knots (LTG), and the projected q."""
    q0 = lat["q_intrinsic"]
    q = math.sqrt(cos_i**2 + q0**2 * (1 - cos_i**2))
    if is_etg:
        body = Component(
            "sersic", band_fluxes(body_f, *col["bulge"]), lat["re_arcsec"],
            n=lat["sersic_n"], q=q, beta_deg=pa, trunc=8.0,
        )
        return [body], q
    bt = lat["bt"]
    qb = math.sqrt(cos_i**2 + 0.7**2 * (1 - cos_i**2))
    knot_frac = lat["knot_frac"]
    disk_f = body_f * (1 - bt)
    host = [
        Component(
            "sersic", band_fluxes(body_f * bt, *col["bulge"]), lat["bulge_re_arcsec"],
            n=lat["sersic_n"], q=qb, beta_deg=pa, trunc=8.0,
        ),
        Component(
            "exponential", band_fluxes(disk_f * (1 - knot_frac), *col["disk"]),
            lat["re_arcsec"], q=q, beta_deg=pa,
        ),
    ]
    if knot_frac > 0:
        host.append(
            Component(
                "knots", band_fluxes(disk_f * knot_frac, *col["knots"]), lat["re_arcsec"],
                q=q, beta_deg=pa, npoints=int(lat["n_knots"]),
            )
        )
    return host, q


def _halo(
    rng: np.random.Generator, lat: dict[str, float], col: Colours, flux: float, re: float,
    pa: float, cos_i: float,
) -> Component:
    """Return the accreted halo: rounder, possibly off-centre after a recent merger."""
    off = lat["halo_offset_re"] * re
    ang = rng.uniform(0, 2 * math.pi)
    return Component(
        "sersic",
        band_fluxes(flux, *col["halo"]),
        lat["halo_re_arcsec"],
        n=1.5,
        q=lat["halo_q"] ** (0.5 + 0.5 * (1 - cos_i)),
        beta_deg=pa + float(rng.normal(0, 10)),
        dx=off * math.cos(ang),
        dy=off * math.sin(ang),
        trunc=5.0,
    )


def _companion(
    rng: np.random.Generator, lat: dict[str, float], col: Colours, f_tot: float, kpc: float,
    shift: DomainShift,
) -> tuple[list[Component], float]:
    """Return the companion of an ongoing merger and its projected separation (arcsec)."""
    if not lat["companion_flux"] > 0:
        return [], 0.0
    sep3 = lat["companion_sep_kpc"]
    sin_t = math.sqrt(1 - float(rng.uniform(0, 1)) ** 2)
    sep = min(max(sep3 * sin_t, 2.0) / kpc, 4.0)
    ang = float(rng.uniform(0, 2 * math.pi))
    cf = f_tot * lat["companion_flux"]
    cre = lat["companion_re_arcsec"]
    dx, dy = sep * math.cos(ang), sep * math.sin(ang)
    cpa = float(rng.uniform(0, 180))
    if lat["companion_etg"] > 0.5:
        return [
            Component(
                "sersic", band_fluxes(cf, *col["bulge"]), cre, n=4.0 + shift.sersic_dn,
                q=float(rng.uniform(0.6, 0.95)), beta_deg=cpa, dx=dx, dy=dy, trunc=8.0,
            )
        ], sep
    cq = float(rng.uniform(0.3, 0.9))
    return [
        Component(
            "sersic", band_fluxes(0.25 * cf, *col["bulge"]), 0.4 * cre,
            n=quantise_sersic(3.0 + shift.sersic_dn), q=0.8, beta_deg=cpa, dx=dx, dy=dy,
            trunc=8.0,
        ),
        Component(
            "exponential", band_fluxes(0.75 * cf, *col["disk"]), cre, q=cq, beta_deg=cpa,
            dx=dx, dy=dy,
        ),
    ], sep


def _field(
    rng: np.random.Generator, shift: DomainShift
) -> tuple[list[Component], int, int, bool]:
    """Interlopers and stars per unit area of a 128-px stamp.

    Positions are in units of the stamp's half-width; the renderer scales them to the stamp.
    Returns the components, the numbers of interlopers and faint stars, and whether a bright
    saturated star was added.
    """
    fld: list[Component] = []
    n_int = int(rng.poisson(shift.n_interlopers))
    for _ in range(n_int):
        m = float(20.0 + 5.0 * rng.uniform(0, 1) ** 0.6)
        fi = 10 ** (-0.4 * (m - ZERO_POINT))
        etg = rng.uniform() < 0.3
        zi = float(rng.uniform(0.2, 1.0))
        tmpl = "E" if etg else ("Sbc", "Scd", "Im")[int(rng.integers(3))]
        gr, ri = cww_colours(tmpl, min(zi, 0.4))
        gr += 0.3 * max(zi - 0.4, 0) + float(rng.normal(0, 0.1))
        r_int = float(np.clip(10 ** rng.normal(-0.35 - 0.12 * (m - 22), 0.15), 0.08, 1.5))
        ux, uy = rng.uniform(-1, 1, 2)
        fld.append(
            Component(
                "sersic" if etg else "exponential",
                band_fluxes(fi, gr, ri),
                r_int,
                n=4.0 if etg else 1.0,
                q=float(rng.uniform(0.3, 1.0)),
                beta_deg=float(rng.uniform(0, 180)),
                dx=float(ux),
                dy=float(uy),
                trunc=6.0,
            )
        )
    n_star = int(rng.poisson(shift.n_stars))
    for _ in range(n_star):
        m = float(17.0 + 5.0 * rng.uniform(0, 1) ** 0.7)
        gr = float(rng.uniform(0.3, 1.4))
        ri = 0.4 * gr + float(rng.normal(0, 0.05))
        ux, uy = rng.uniform(-1, 1, 2)
        fld.append(
            Component(
                "point", band_fluxes(10 ** (-0.4 * (m - ZERO_POINT)), gr, ri), 0.0,
                dx=float(ux), dy=float(uy),
            )
        )
    saturated = bool(rng.uniform() < shift.p_saturated_star)
    if saturated:
        m = float(rng.uniform(13.0, 15.5))
        gr = float(rng.uniform(0.4, 1.3))
        ang = float(rng.uniform(0, 2 * math.pi))
        rad = float(rng.uniform(0.45, 0.95))
        fld.append(
            Component(
                "point", band_fluxes(10 ** (-0.4 * (m - ZERO_POINT)), gr, 0.4 * gr), 0.0,
                dx=rad * math.cos(ang), dy=rad * math.sin(ang),
            )
        )
    return fld, n_int, n_star, saturated
