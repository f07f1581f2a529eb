"""The population model of the mock universe: one galaxy's physics, no pixels.

:func:`draw_galaxy` turns ``(domain, seed, index)`` into a :class:`Galaxy`: redshift, stellar
mass, type, ex-situ fraction, last major merger, size, structure, colours and the merger
signatures the renderer will draw (formats-and-mocks-research.md §6 steps 1–9; domain shifts of
mock-universe.md). :meth:`Galaxy.view` adds what depends on the projection (orientation,
tidal-feature geometry, PSF, noise depth, field objects), and :meth:`Galaxy.row` returns the
catalogue row with the contract columns, the truth and every latent the renderer uses
(``struct_*``).

Everything is drawn from ``numpy.random.default_rng([domain_code, seed, index])`` (intrinsic) and
``default_rng([domain_code, seed, index, 1 + projection])`` (per view), so a galaxy is the same in
every process and every projection of it shares its truth.

The recipe, step by step
------------------------
1. z ~ U(0.1, 0.4), snapped to the nearest TNG snapshot (72–91) for the simulation domains;
   ``snap`` is that snapshot for every domain.
2. log M★: ``balanced`` U(9.5, 11.8) (``tng50``: density ∝ 10^(−0.45 (log M − 9.5)));
   ``population`` Baldry+12 double Schechter on [9.5, 12] with a floor above 11.5
   (``tng50``: M* − 0.3 dex).
3. P(ETG) = σ((log M − 10.6)/0.3).
4. logit f_ex ~ N(logit f_med(M) ± 0.5 (ETG/LTG) + domain shift, 0.8),
   f_med = 0.02 + 0.83 σ((log M − 11.3)/0.35).
5. Major mergers: inhomogeneous Poisson process back to z = 3 with the RG15 rate ×
   (f_ex/f_med)^0.5; t_LMM = the most recent one, log M_LMM = log M − U(0, log 4) − 0.1 t_LMM;
   none → NaN. A companion is drawn for an ongoing merger (next one within 0.5 Gyr, or the last
   within 0.2 Gyr).
6. Sizes: van der Wel+14 relations with z evolution, 0.15 dex scatter (skewed small for LTGs),
   + 0.1 Δlogit f_ex (from the reference median for the type, so a domain's f_ex shift
   shows), domain shifts; then a soft cap
   R_e → R_e / (1 + (R_e/0.85″)³)^(1/3) (keeps the ranking) so that a 4 × R90 crop fits the
   stamp for most galaxies (see "Crop fit" below).
7. Structure: ETG Sérsic n ≈ 3.9 + 0.45 Δlogit f_ex ± 0.6 (quantised to 0.1, truncated at
   8 R_e); LTG exponential disk + bulge (n ≈ 2.8 + 0.3 Δlogit ± 0.7, R_b = 0.3–0.5 R_e) with
   B/T = 0.15 + 0.55 σ((log M − 10.6)/0.4) + 0.2 f_ex (± 0.05) and star-forming knots.
8. Photometry: Taylor+11 M/L with (g−i)_rest 1.1/0.7 (± 0.08 mag), CWW E/Sbc/Scd observed
   colours through the HSC filters (± 0.05 mag), no evolution.
9. Merger signatures: accreted halo (Sérsic n = 1.5, 2.5–3.5 R_e, ≤ 2.4″, q 0.7–0.95) with light
   fraction 0.45 f_ex × 10^N(0, 0.3) (≤ 0.6), off-centre by 0.1–0.3 R_e after a recent merger;
   tidal tails or shells (ETGs) after a major merger within 2 τ (flux U(0.06, 0.16) F
   exp(−t_LMM/τ), τ = 1 Gyr), thin streams after minor accretion with probability
   ∝ (f_ex/f_med)^0.5; every feature dimmed by a projection factor U(0.35, 1).

Oracle and floor (``python bench/bench_mock.py --only oracle``; tng100, balanced)
-----------------------------------------------------------------------------
20,000 galaxies (projection 0), split on the index (= ``root_id``) into halves; a
``HistGradientBoostingRegressor`` predicting the ex-situ fraction:

================================  ======  =================
features                          RMSE    within ±0.1
================================  ======  =================
all ``struct_*`` + log M, z, type  0.077   0.83  (oracle)
log M, z only                      0.130   0.67  (floor)
================================  ======  =================

The oracle is the ceiling an ideal measurement of the image could reach (mock-universe.md);
it sits at the low end of the published 0.07–0.10. Its leading features are log M, the Sérsic
index, the halo light fraction and the size.

Applied to 10,000 ``hsc`` galaxies, the tng100-trained oracle infers an ex-situ fraction lower
than tng100's at fixed mass by 0.036 (the truth: 0.057; mass and z alone: 0.002): the part of
the ``hsc`` shift that the image channels carry (sizes, Sérsic index, B/T, halo, mergers).

Crop fit
--------
Fraction of galaxies whose 4 × R90 crop (Petrosian R90 measured by ``prepare`` on the noisy r
band) fits inside the stamp, tng100 balanced, 300 galaxies (``bench_mock.py --only cropfit``):
0.77 at 64 px, 0.96 at 96 px, 1.00 at 128 px. At 64 px the overflowing galaxies are the
massive, halo-dominated ones (log M★ > 11: about half of them); ``prepare`` then keeps the whole
stamp. Sizes are soft-capped at R_e ≈ 0.85″ and haloes at 2.4″ to get there. ``simba`` (low-mass
galaxies +0.25 dex, after the cap): 0.59 at 64 px, 1.00 at 128 px (150 galaxies).
"""

from __future__ import annotations

import math
from dataclasses import dataclass, field
from functools import lru_cache
from typing import Any

import numpy as np

from ergo_ray.cosmology import (
    TNG_SNAPSHOTS,
    age_gyr,
    distance_modulus,
    kpc_per_arcsec,
    nearest_tng_snapshot,
    z_at_age,
)
from ergo_ray.errors import ConfigError
from ergo_ray.types import DOMAINS, PIXEL_SCALE_ARCSEC, PSF_FWHM_ARCSEC, ZERO_POINT

__all__ = [
    "DOMAIN_CODES",
    "DOMAIN_SHIFTS",
    "MASS_MODES",
    "TNG_SNAPSHOTS",
    "DomainShift",
    "Galaxy",
    "View",
    "cosmology",
    "draw_galaxy",
    "f_exsitu_median",
    "major_merger_rate",
]

#: Integer code of each domain in the random seed sequence.
DOMAIN_CODES: dict[str, int] = {name: i + 1 for i, name in enumerate(DOMAINS)}
MASS_MODES: tuple[str, str] = ("balanced", "population")

# Observed-frame CWW colours through the HSC filters (research §4.1): z → (g−r, r−i).
_CWW_Z = np.array([0.1, 0.2, 0.3, 0.4])
_CWW = {
    "E": (np.array([0.91, 1.24, 1.53, 1.75]), np.array([0.46, 0.52, 0.62, 0.73])),
    "Sbc": (np.array([0.55, 0.73, 0.93, 1.17]), np.array([0.36, 0.35, 0.39, 0.43])),
    "Scd": (np.array([0.44, 0.62, 0.80, 0.95]), np.array([0.24, 0.25, 0.28, 0.35])),
    "Im": (np.array([0.24, 0.40, 0.54, 0.63]), np.array([0.19, 0.13, 0.10, 0.20])),
}

#: Sky noise per pixel per band, ZP-27 units (research §1.6).
SKY_SIGMA: dict[str, float] = {"g": 0.037, "r": 0.054, "i": 0.069}

# Size compression: rendered R_e = R / (1 + (R/R_CAP)^k)^(1/k) keeps the ranking of sizes while
# letting a 4 × R90 crop fit a 64-px stamp for nearly all galaxies (documented in bench_mock).
_RE_CAP_ARCSEC = 0.85
_RE_CAP_POWER = 3.0
_RE_MIN_ARCSEC = 0.12
#: Halo radius cap in arcsec (it would otherwise leave the stamp).
_HALO_CAP_ARCSEC = 2.4


def cosmology(z: float) -> dict[str, float]:
    """Return distances at redshift ``z`` in the TNG cosmology (:mod:`ergo_ray.cosmology`).

    Parameters
    ----------
    z : float
        Redshift in (0, 1].

    Returns
    -------
    dict
        ``kpc_per_arcsec``, ``dist_mod`` (mag), ``age_gyr`` and ``lookback_gyr``.
    """
    return {
        "kpc_per_arcsec": float(kpc_per_arcsec(z)),
        "dist_mod": float(distance_modulus(z)),
        "age_gyr": float(age_gyr(z)),
        "lookback_gyr": float(age_gyr(0.0) - age_gyr(z)),
    }


# --------------------------------------------------------------------------------------------
# Relations
# --------------------------------------------------------------------------------------------
def f_exsitu_median(log_mstar: np.ndarray | float) -> np.ndarray:
    """Median ex-situ fraction at stellar mass (research §4.2 fit to Illustris/TNG anchors).

    Parameters
    ----------
    log_mstar : float or array
        log10 stellar mass [Msun].

    Returns
    -------
    numpy.ndarray
        ``0.02 + 0.83 / (1 + exp(-(log M - 11.3) / 0.35))``.
    """
    x = np.asarray(log_mstar, dtype=float)
    return 0.02 + 0.83 / (1.0 + np.exp(-(x - 11.3) / 0.35))


def _logit(p: np.ndarray | float) -> np.ndarray:
    p = np.clip(np.asarray(p, dtype=float), 1e-6, 1 - 1e-6)
    return np.log(p / (1 - p))


def _expit(x: np.ndarray | float) -> np.ndarray:
    return 1.0 / (1.0 + np.exp(-np.asarray(x, dtype=float)))


def major_merger_rate(log_mstar: float, z: np.ndarray | float) -> np.ndarray:
    """Major-merger rate (mass ratio ≥ 1/4) per galaxy per Gyr, Rodriguez-Gomez et al. 2015 form.

    Parameters
    ----------
    log_mstar : float
        log10 descendant stellar mass [Msun].
    z : float or array
        Redshift(s).

    Returns
    -------
    numpy.ndarray
        Rate in Gyr⁻¹ (coefficients of RG15 Table 1 as recalled in research §4.2).
    """
    zp1 = 1.0 + np.asarray(z, dtype=float)
    a_z = 10**-2.2287 * zp1**2.4644
    alpha = 0.2241 * zp1**-1.1759
    beta = -1.2595 * zp1**0.0611
    delta = 0.7668 * zp1**-0.4695
    x = 10 ** (log_mstar - math.log10(2e11))
    b = beta - 0.0477 * (log_mstar - 10.0)
    mu_int = (1.0 - 0.25 ** (b + 1.0)) / (b + 1.0)
    return a_z * x**alpha * (1.0 + x**delta) * mu_int


# --------------------------------------------------------------------------------------------
# Domains
# --------------------------------------------------------------------------------------------
@dataclass(frozen=True)
class DomainShift:
    """The documented differences of one domain from the reference (mock-universe.md table).

    Attributes
    ----------
    fex_logit : float
        Shift of logit(f_ex) at fixed mass.
    size_dex : float
        Size shift at every mass (dex).
    size_dex_lowmass : float
        Extra size shift below log M = 10.5 (tapering to 0 at 10.8), applied to the apparent
        size after the size cap.
    sersic_dn : float
        Shift of the Sérsic index of spheroids (ETGs and bulges).
    gr_shift : float
        Shift of every component's g − r colour (mag).
    mass_tilt : float
        Balanced mode: log-mass density ∝ 10^(−tilt (log M − 9.5)). 0 = uniform.
    mstar_shift : float
        Population mode: shift of the Schechter M* (dex).
    tidal_prob : float
        Multiplier of the probability that a merger leaves a visible feature.
    tidal_flux : float
        Multiplier of tidal-feature flux.
    tidal_fade_gyr : float
        e-folding time of tidal-feature flux after the merger.
    tidal_width : float
        Multiplier of tidal-feature width (smoother when > 1).
    psf_scatter : float
        Relative 1σ scatter of the PSF FWHM.
    noise_corr : float
        Neighbour weight of the 3×3 noise-correlation kernel.
    n_interlopers : float
        Mean number of field galaxies in a 128-px stamp (scaled by area).
    n_stars : float
        Mean number of stars in a 128-px stamp (scaled by area).
    p_saturated_star : float
        Probability of one bright saturated star in the stamp.
    snap_redshift : bool
        Snap redshifts to the TNG snapshot grid (simulations).
    """

    fex_logit: float = 0.0
    size_dex: float = 0.0
    size_dex_lowmass: float = 0.0
    sersic_dn: float = 0.0
    gr_shift: float = 0.0
    mass_tilt: float = 0.0
    mstar_shift: float = 0.0
    tidal_prob: float = 1.0
    tidal_flux: float = 1.0
    tidal_fade_gyr: float = 1.0
    tidal_width: float = 1.0
    psf_scatter: float = 0.10
    noise_corr: float = 0.25
    n_interlopers: float = 1.5
    n_stars: float = 0.4
    p_saturated_star: float = 0.0
    snap_redshift: bool = True


#: The shifts of each domain (mock-universe.md "Five domains").
DOMAIN_SHIFTS: dict[str, DomainShift] = {
    "tng100": DomainShift(),
    "tng50": DomainShift(
        mass_tilt=0.45, mstar_shift=-0.3, tidal_flux=1.6, tidal_fade_gyr=1.4
    ),
    "eagle": DomainShift(fex_logit=-0.3, size_dex=-0.05),
    "simba": DomainShift(
        size_dex_lowmass=0.25,
        sersic_dn=-1.0,
        gr_shift=-0.1,
        tidal_prob=0.5,
        tidal_flux=0.7,
        tidal_width=2.5,
    ),
    "hsc": DomainShift(
        fex_logit=-0.5,
        psf_scatter=0.20,
        noise_corr=0.45,
        n_interlopers=3.5,
        n_stars=0.8,
        p_saturated_star=0.12,
        snap_redshift=False,
    ),
}


def _check_domain(domain: str) -> DomainShift:
    if domain not in DOMAIN_SHIFTS:
        msg = f"unknown mock domain {domain!r}; expected one of {', '.join(DOMAINS)}"
        raise ConfigError(msg)
    return DOMAIN_SHIFTS[domain]


# --------------------------------------------------------------------------------------------
# Mass function
# --------------------------------------------------------------------------------------------
@lru_cache(maxsize=8)
def _population_cdf(mstar_shift: float) -> tuple[np.ndarray, np.ndarray]:
    """Baldry+12 double Schechter in log M over [9.5, 12] with a flat floor above 11.5."""
    x = np.linspace(9.5, 12.0, 2501)
    m = 10 ** (x - (10.66 + mstar_shift))
    phi = np.log(10) * np.exp(-m) * m * (3.96e-3 * m**-0.35 + 0.79e-3 * m**-1.47)
    floor = np.interp(11.5, x, phi)
    phi = np.where(x > 11.5, np.maximum(phi, floor * 0.5), phi)
    cdf = np.concatenate([[0.0], np.cumsum(0.5 * (phi[1:] + phi[:-1]) * np.diff(x))])
    return x, cdf / cdf[-1]


def _draw_mass(rng: np.random.Generator, mode: str, shift: DomainShift) -> float:
    u = rng.random()
    if mode == "population":
        x, cdf = _population_cdf(shift.mstar_shift)
        return float(np.interp(u, cdf, x))
    lo, hi = 9.5, 11.8
    if shift.mass_tilt <= 0:
        return lo + u * (hi - lo)
    k = shift.mass_tilt * math.log(10)
    # inverse CDF of a density ∝ exp(−k (x − lo)) on [lo, hi]
    return lo - math.log(1 - u * (1 - math.exp(-k * (hi - lo)))) / k


# --------------------------------------------------------------------------------------------
# The galaxy
# --------------------------------------------------------------------------------------------
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


def _band_fluxes(f_i: float, gr: float, ri: float) -> tuple[float, float, float]:
    f_r = f_i * 10 ** (-0.4 * ri)
    f_g = f_r * 10 ** (-0.4 * gr)
    return (f_g, f_r, f_i)


def _cww(template: str, z: float) -> tuple[float, float]:
    gr, ri = _CWW[template]
    return float(np.interp(z, _CWW_Z, gr)), float(np.interp(z, _CWW_Z, ri))


def _soft_cap(r: float, cap: float) -> float:
    return r / (1.0 + (r / cap) ** _RE_CAP_POWER) ** (1.0 / _RE_CAP_POWER)


def _qn(n: float, lo: float = 0.5, hi: float = 6.0) -> float:
    """Quantise a Sérsic index to 0.1 (GalSim caches one profile per index)."""
    return round(min(max(n, lo), hi) * 10) / 10


@dataclass(frozen=True)
class Galaxy:
    """One mock galaxy's intrinsic properties (shared by all its projections).

    Use :func:`draw_galaxy` to make one. Attributes are in physical units; ``latents`` holds
    every intrinsic number the renderer uses (becoming ``struct_*`` columns).
    """

    domain: str
    seed: int
    index: int
    redshift: float
    snap: int
    log_mstar: float
    is_etg: bool
    exsitu_frac: float
    lmm_lookback_gyr: float
    lmm_log_mass: float
    i_mag: float
    ra: float
    dec: float
    latents: dict[str, float] = field(default_factory=dict)
    colours: dict[str, tuple[float, float]] = field(default_factory=dict)

    @property
    def root_id(self) -> str:
        """The galaxy's ID shared by its projections."""
        return f"{self.domain}-{self.seed}-{self.index:07d}"

    def object_id(self, projection: int) -> str:
        """Return the ID of one projection's image."""
        return f"{self.root_id}-p{projection}"

    def row(self, projection: int = 0) -> dict[str, Any]:
        """Return the catalogue row of one projection.

        Parameters
        ----------
        projection : int
            0–3.

        Returns
        -------
        dict
            Contract columns (``object_id`` ... ``true_lmm_log_mass``), ``i_mag``, ``ra``,
            ``dec``, ``snap``, ``is_etg`` and every ``struct_*`` latent (intrinsic and of
            this projection).
        """
        view = self.view(projection)
        row: dict[str, Any] = {
            "object_id": self.object_id(projection),
            "root_id": self.root_id,
            "domain": self.domain,
            "projection": int(projection),
            "redshift": float(self.redshift),
            "log_mstar": float(self.log_mstar),
            "true_exsitu_frac": float(self.exsitu_frac),
            "true_lmm_lookback_gyr": float(self.lmm_lookback_gyr),
            "true_lmm_log_mass": float(self.lmm_log_mass),
            "i_mag": float(self.i_mag),
            "ra": float(self.ra),
            "dec": float(self.dec),
            "snap": int(self.snap),
            "is_etg": bool(self.is_etg),
        }
        for key, value in self.latents.items():
            row[f"struct_{key}"] = float(value)
        for key, value in view.struct.items():
            row[f"struct_{key}"] = float(value)
        return row

    # ----------------------------------------------------------------------------------------
    def view(self, projection: int) -> View:
        """Return one projection: orientation, tidal geometry, PSF, noise and field objects.

        Parameters
        ----------
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
        shift = DOMAIN_SHIFTS[self.domain]
        lat = self.latents
        rng = np.random.default_rng(
            [DOMAIN_CODES[self.domain], self.seed, self.index, 1 + int(projection)]
        )
        kpc = lat["kpc_per_arcsec"]
        f_tot = 10 ** (-0.4 * (self.i_mag - ZERO_POINT))
        re = lat["re_arcsec"]
        pa = float(rng.uniform(0, 180))
        cos_i = float(rng.uniform(0, 1))
        host: list[Component] = []
        st: dict[str, float] = {"pa_deg": pa, "cos_incl": cos_i}

        halo_f = lat["halo_frac"]
        tidal_f_int = lat["tidal_frac"]
        # Tidal features fade with projection: seen edge-on to their plane they are brighter.
        proj_vis = float(rng.uniform(0.35, 1.0)) if tidal_f_int > 0 else 0.0
        tidal_f = tidal_f_int * proj_vis
        body_f = f_tot * (1.0 - halo_f - tidal_f)
        col = self.colours

        # central body
        if self.is_etg:
            q0 = lat["q_intrinsic"]
            q = math.sqrt(cos_i**2 + q0**2 * (1 - cos_i**2))
            host.append(
                Component(
                    "sersic",
                    _band_fluxes(body_f, *col["bulge"]),
                    re,
                    n=lat["sersic_n"],
                    q=q,
                    beta_deg=pa,
                    trunc=8.0,
                )
            )
            st["q"] = q
        else:
            bt = lat["bt"]
            q0 = lat["q_intrinsic"]
            q = math.sqrt(cos_i**2 + q0**2 * (1 - cos_i**2))
            qb = math.sqrt(cos_i**2 + 0.7**2 * (1 - cos_i**2))
            knot_frac = lat["knot_frac"]
            disk_f = body_f * (1 - bt)
            host.append(
                Component(
                    "sersic",
                    _band_fluxes(body_f * bt, *col["bulge"]),
                    lat["bulge_re_arcsec"],
                    n=lat["sersic_n"],
                    q=qb,
                    beta_deg=pa,
                    trunc=8.0,
                )
            )
            host.append(
                Component(
                    "exponential",
                    _band_fluxes(disk_f * (1 - knot_frac), *col["disk"]),
                    re,
                    q=q,
                    beta_deg=pa,
                )
            )
            if knot_frac > 0:
                host.append(
                    Component(
                        "knots",
                        _band_fluxes(disk_f * knot_frac, *col["knots"]),
                        re,
                        q=q,
                        beta_deg=pa,
                        npoints=int(lat["n_knots"]),
                    )
                )
            st["q"] = q

        # accreted halo: rounder, possibly off-centre after a recent merger
        if halo_f > 0:
            off = lat["halo_offset_re"] * re
            ang = rng.uniform(0, 2 * math.pi)
            host.append(
                Component(
                    "sersic",
                    _band_fluxes(f_tot * halo_f, *col["halo"]),
                    lat["halo_re_arcsec"],
                    n=1.5,
                    q=lat["halo_q"] ** (0.5 + 0.5 * (1 - cos_i)),
                    beta_deg=pa + float(rng.normal(0, 10)),
                    dx=off * math.cos(ang),
                    dy=off * math.sin(ang),
                    trunc=5.0,
                )
            )

        # tidal features: chains of elongated Gaussians along arcs, drawn in projection
        kind = int(lat["tidal_kind"])
        if tidal_f > 0 and kind > 0:
            host.extend(
                _tidal_components(
                    rng,
                    kind,
                    f_tot * tidal_f,
                    col["halo"],
                    re,
                    kpc,
                    pa,
                    shift.tidal_width,
                )
            )
        st["tidal_flux"] = tidal_f
        st["tidal_visibility"] = proj_vis

        # companion of an ongoing merger: projected separation
        companion: list[Component] = []
        if lat["companion_flux"] > 0:
            sep3 = lat["companion_sep_kpc"]
            sin_t = math.sqrt(1 - float(rng.uniform(0, 1)) ** 2)
            sep = min(max(sep3 * sin_t, 2.0) / kpc, 4.0)
            ang = float(rng.uniform(0, 2 * math.pi))
            cf = f_tot * lat["companion_flux"]
            cre = lat["companion_re_arcsec"]
            dx, dy = sep * math.cos(ang), sep * math.sin(ang)
            cpa = float(rng.uniform(0, 180))
            if lat["companion_etg"] > 0.5:
                companion.append(
                    Component(
                        "sersic",
                        _band_fluxes(cf, *col["bulge"]),
                        cre,
                        n=4.0 + shift.sersic_dn,
                        q=float(rng.uniform(0.6, 0.95)),
                        beta_deg=cpa,
                        dx=dx,
                        dy=dy,
                        trunc=8.0,
                    )
                )
            else:
                cq = float(rng.uniform(0.3, 0.9))
                companion.append(
                    Component(
                        "sersic",
                        _band_fluxes(0.25 * cf, *col["bulge"]),
                        0.4 * cre,
                        n=_qn(3.0 + shift.sersic_dn),
                        q=0.8,
                        beta_deg=cpa,
                        dx=dx,
                        dy=dy,
                        trunc=8.0,
                    )
                )
                companion.append(
                    Component(
                        "exponential",
                        _band_fluxes(0.75 * cf, *col["disk"]),
                        cre,
                        q=cq,
                        beta_deg=cpa,
                        dx=dx,
                        dy=dy,
                    )
                )
            st["companion_sep_arcsec"] = sep
        else:
            st["companion_sep_arcsec"] = 0.0

        # field: interlopers and stars, per unit area of a 128-px stamp (positions in units of
        # the half-width; the renderer scales them to the stamp)
        fld: list[Component] = []
        n_int = int(rng.poisson(shift.n_interlopers))
        for _ in range(n_int):
            m = float(20.0 + 5.0 * rng.uniform(0, 1) ** 0.6)
            fi = 10 ** (-0.4 * (m - ZERO_POINT))
            etg = rng.uniform() < 0.3
            zi = float(rng.uniform(0.2, 1.0))
            tmpl = "E" if etg else ("Sbc", "Scd", "Im")[int(rng.integers(3))]
            gr, ri = _cww(tmpl, min(zi, 0.4))
            gr += 0.3 * max(zi - 0.4, 0) + float(rng.normal(0, 0.1))
            r_int = float(
                np.clip(10 ** rng.normal(-0.35 - 0.12 * (m - 22), 0.15), 0.08, 1.5)
            )
            ux, uy = rng.uniform(-1, 1, 2)
            fld.append(
                Component(
                    "sersic" if etg else "exponential",
                    _band_fluxes(fi, gr, ri),
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
                    "point",
                    _band_fluxes(10 ** (-0.4 * (m - ZERO_POINT)), gr, ri),
                    0.0,
                    dx=float(ux),
                    dy=float(uy),
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
                    "point",
                    _band_fluxes(10 ** (-0.4 * (m - ZERO_POINT)), gr, 0.4 * gr),
                    0.0,
                    dx=rad * math.cos(ang),
                    dy=rad * math.sin(ang),
                )
            )
        st["n_interlopers"] = float(n_int)
        st["n_stars"] = float(n_star + saturated)

        # PSF, noise
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
            {
                "psf_fwhm_g": fwhm[0],
                "psf_fwhm_r": fwhm[1],
                "psf_fwhm_i": fwhm[2],
                "noise_depth": depth,
            }
        )
        return View(
            projection=int(projection),
            host=host,
            companion=companion,
            field=fld,
            psf_fwhm=fwhm,
            psf_g=(float(e[0]), float(e[1])),
            sigma=sigma,  # type: ignore[arg-type]
            noise_corr=shift.noise_corr,
            sky_offset=sky,
            offset_px=off_px,  # type: ignore[arg-type]
            saturated_star=saturated,
            struct=st,
            noise_seed=int(rng.integers(2**62)),
        )


def _tidal_components(
    rng: np.random.Generator,
    kind: int,
    flux_i: float,
    colour: tuple[float, float],
    re: float,
    kpc: float,
    pa: float,
    width_mult: float,
) -> list[Component]:
    """Tails (kind 1), shells (2) or a thin stream (3) as chains of sheared Gaussians."""
    comps: list[Component] = []
    width = float(rng.uniform(0.3, 1.0)) * width_mult / kpc  # arcsec
    width = max(width, 0.12)
    # arcs: (inner radius, outer radius, central angle, angular extent), arcsec / radians
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
        if kind == 3:
            width *= 0.6
    weights = weights / weights.sum()
    sense = 1.0 if rng.uniform() < 0.5 else -1.0
    for (r_in, r_out, centre, extent), w in zip(arcs, weights, strict=True):
        r_in, r_out = min(r_in, 4.5), min(r_out, 4.8)
        n_seg = 10
        arc_len = 0.5 * (r_in + r_out) * extent + (r_out - r_in)
        # Gaussian segments: σ across the arc = width, σ along it ~ the segment spacing
        seg_len = max(0.75 * arc_len / n_seg, width)
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
                    _band_fluxes(flux_i * w * taper, *colour),
                    math.sqrt(width * seg_len),
                    q=width / seg_len,
                    beta_deg=math.degrees(phi) + 90.0,
                    dx=dx,
                    dy=dy,
                )
            )
    # renormalise so the features carry exactly flux_i in i
    tot = sum(c.flux[2] for c in comps)
    if tot > 0:
        s = flux_i / tot
        comps = [
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
    return comps


def draw_galaxy(
    domain: str, seed: int, index: int, mass_mode: str = "balanced"
) -> Galaxy:
    """Draw one galaxy of the mock universe (population model only, no pixels).

    Parameters
    ----------
    domain : str
        One of ``tng100``, ``tng50``, ``eagle``, ``simba``, ``hsc``.
    seed : int
        Survey seed (non-negative).
    index : int
        Galaxy index within the survey (non-negative).
    mass_mode : {"balanced", "population"}
        ``balanced``: log M uniform over [9.5, 11.8] (tilted to low masses for ``tng50``);
        ``population``: Baldry et al. 2012 double Schechter over [9.5, 12].

    Returns
    -------
    Galaxy
        Deterministic in ``(domain, seed, index, mass_mode)``.

    Raises
    ------
    ConfigError
        For an unknown domain or mass mode, or a negative seed or index.
    """
    shift = _check_domain(domain)
    if mass_mode not in MASS_MODES:
        msg = f"mass_mode must be one of {MASS_MODES}, got {mass_mode!r}"
        raise ConfigError(msg)
    if seed < 0 or index < 0:
        msg = f"seed and index must be non-negative, got seed={seed}, index={index}"
        raise ConfigError(msg)
    rng = np.random.default_rng([DOMAIN_CODES[domain], int(seed), int(index)])

    # 1. redshift (snapped to the TNG snapshot grid for simulations)
    z = float(rng.uniform(0.1, 0.4))
    snap = nearest_tng_snapshot(z)
    if shift.snap_redshift:
        z = TNG_SNAPSHOTS[snap]
    cosmo = cosmology(z)
    kpc = cosmo["kpc_per_arcsec"]

    # 2–3. mass and type
    log_m = _draw_mass(rng, mass_mode, shift)
    p_etg = float(_expit((log_m - 10.6) / 0.3))
    is_etg = bool(rng.uniform() < p_etg)

    # 4. ex-situ fraction: logit-normal around the median with type offsets and domain shift
    f_med = float(f_exsitu_median(log_m))
    mu = float(_logit(f_med)) + (0.5 if is_etg else -0.5) + shift.fex_logit
    logit_f = float(rng.normal(mu, 0.8))
    f_ex = float(np.clip(_expit(logit_f), 1e-3, 0.99))
    # deviation from the reference (tng100) median at this mass and type drives the image
    # channels, so a domain's ex-situ shift shows in sizes and profiles as the recipe says
    dlogit = logit_f - (mu - shift.fex_logit)

    # 5. merger history: inhomogeneous Poisson process in lookback time, rate tied to f_ex
    boost = (f_ex / f_med) ** 0.5
    t_max = float(age_gyr(z) - age_gyr(3.0))
    tau = np.linspace(0.0, t_max, 96)
    rate = major_merger_rate(log_m, z_at_age(age_gyr(z) - tau)) * boost
    cum = np.concatenate(
        [[0.0], np.cumsum(0.5 * (rate[1:] + rate[:-1]) * np.diff(tau))]
    )
    e1 = float(rng.exponential())
    u_mass = float(rng.uniform(0, math.log10(4)))
    if e1 < cum[-1]:
        t_lmm = float(np.interp(e1, cum, tau))
        log_m_lmm = log_m - u_mass - 0.1 * t_lmm
    else:
        t_lmm, log_m_lmm = math.nan, math.nan
    rate_now = float(rate[0])
    next_merger = bool(rng.uniform() < 1 - math.exp(-0.5 * rate_now))

    # 6. size (kpc → arcsec), with the f_ex term, redshift evolution and domain shifts
    if is_etg:
        log_re = 0.60 + 0.75 * (log_m - 10.70) + float(rng.normal(0, 0.15))
        log_re += -1.48 * math.log10((1 + z) / 1.25)
    else:
        eps = 0.17 * (float(rng.normal()) - 0.6 * abs(float(rng.normal())) + 0.48)
        log_re = 0.86 + 0.22 * (log_m - 10.70) + eps
        log_re += -0.75 * math.log10((1 + z) / 1.25)
    log_re += 0.1 * dlogit + shift.size_dex
    re_kpc = 10**log_re
    re_arcsec_phys = re_kpc / kpc
    re = max(_soft_cap(re_arcsec_phys, _RE_CAP_ARCSEC), _RE_MIN_ARCSEC)
    if shift.size_dex_lowmass:
        # applied after the cap so that the full shift shows in the images
        re *= 10 ** (shift.size_dex_lowmass * float(np.clip((10.8 - log_m) / 0.3, 0, 1)))

    # 7. structure: concentration rises with the ex-situ excess
    if is_etg:
        n = _qn(
            3.9 + 0.45 * dlogit + float(rng.uniform(-0.6, 0.6)) + shift.sersic_dn,
            1.0,
            6.0,
        )
        bt = 1.0
        q0 = float(rng.uniform(0.45, 0.9))
        bulge_re = re
    else:
        n = _qn(
            2.8 + 0.3 * dlogit + float(rng.uniform(-0.7, 0.7)) + shift.sersic_dn,
            1.0,
            5.0,
        )
        bt = float(
            np.clip(
                0.15
                + 0.55 * _expit((log_m - 10.6) / 0.4)
                + 0.2 * f_ex
                + rng.normal(0, 0.05),
                0.02,
                0.95,
            )
        )
        q0 = float(rng.uniform(0.1, 0.2))
        bulge_re = float(rng.uniform(0.3, 0.5)) * re
    knot_frac = 0.0 if is_etg else float(rng.uniform(0.05, 0.2) * (1 - bt))
    n_knots = int(rng.integers(15, 40))

    # 8. photometry: Taylor+11 M/L, CWW colours
    gi_rest = 1.1 if is_etg else 0.7
    abs_i = (1.15 + 0.70 * gi_rest - log_m) / 0.4 + float(rng.normal(0, 0.08))
    i_mag = abs_i + cosmo["dist_mod"]
    bulge_col = _cww("E", z)
    disk_col = _cww("Sbc" if rng.uniform() < 0.6 else "Scd", z)
    jit = rng.normal(0, 0.05, 4)
    colours = {
        "bulge": (bulge_col[0] + jit[0] + shift.gr_shift, bulge_col[1] + jit[1]),
        "disk": (disk_col[0] + jit[2] + shift.gr_shift, disk_col[1] + jit[3]),
        "knots": (_cww("Im", z)[0] + shift.gr_shift, _cww("Im", z)[1]),
        "halo": (bulge_col[0] - 0.08 + jit[0] + shift.gr_shift, bulge_col[1] - 0.03),
    }

    # 9. merger signatures
    # accreted halo: light fraction ∝ f_ex with 0.3 dex lognormal scatter
    halo_frac = float(np.clip(0.45 * f_ex * 10 ** rng.normal(0, 0.3), 0.0, 0.6))
    halo_re = min(float(rng.uniform(2.5, 3.5)) * re, _HALO_CAP_ARCSEC)
    halo_q = float(rng.uniform(0.7, 0.95))
    # tidal features after a recent major merger, fading with time; minor-merger streams
    tidal_frac, tidal_kind = 0.0, 0
    recent = not math.isnan(t_lmm) and t_lmm < 2.0 * shift.tidal_fade_gyr
    u_tid = float(rng.uniform())
    if recent and u_tid < 0.9 * shift.tidal_prob:
        tidal_frac = float(rng.uniform(0.06, 0.16)) * math.exp(
            -t_lmm / shift.tidal_fade_gyr
        )
        tidal_kind = 2 if (is_etg and rng.uniform() < 0.6) else 1
    elif u_tid > 1 - min(0.05 * boost, 0.3) * shift.tidal_prob:
        tidal_frac = float(rng.uniform(0.02, 0.06))
        tidal_kind = 3
    tidal_frac *= shift.tidal_flux
    halo_offset = float(rng.uniform(0.1, 0.3)) if recent else 0.0
    # companion: next major merger within 0.5 Gyr, or the last one within 0.2 Gyr
    just_merged = not math.isnan(t_lmm) and t_lmm < 0.2
    comp_flux, comp_sep, comp_re, comp_etg = 0.0, 0.0, 0.0, 0.0
    if next_merger or just_merged:
        if just_merged:
            mu_c = 10 ** (log_m_lmm - log_m)
            comp_sep = float(rng.uniform(1.5, 6.0))
        else:
            # μ ∝ μ^-1.3 on [0.1, 1] by inverse CDF
            a = -0.3
            uu = float(rng.uniform())
            mu_c = (0.1**a + uu * (1.0 - 0.1**a)) ** (1 / a)
            comp_sep = float(rng.uniform(5.0, 50.0))
        comp_flux = float(mu_c * 10 ** rng.normal(0, 0.1))
        comp_re = max(re * mu_c**0.3 * 10 ** float(rng.normal(0, 0.1)), _RE_MIN_ARCSEC)
        comp_etg = float(rng.uniform() < p_etg)

    latents = {
        "re_arcsec": re,
        "sersic_n": n,
        "bt": bt,
        "q_intrinsic": q0,
        "bulge_re_arcsec": bulge_re,
        "knot_frac": knot_frac,
        "n_knots": float(n_knots),
        "halo_frac": halo_frac,
        "halo_re_arcsec": halo_re,
        "halo_q": halo_q,
        "halo_offset_re": halo_offset,
        "tidal_frac": tidal_frac,
        "tidal_kind": float(tidal_kind),
        "companion_flux": comp_flux,
        "companion_sep_kpc": comp_sep,
        "companion_re_arcsec": comp_re,
        "companion_etg": comp_etg,
        "gr_bulge": colours["bulge"][0],
        "ri_bulge": colours["bulge"][1],
        "gr_disk": colours["disk"][0],
        "kpc_per_arcsec": kpc,
    }
    return Galaxy(
        domain=domain,
        seed=int(seed),
        index=int(index),
        redshift=z,
        snap=snap,
        log_mstar=log_m,
        is_etg=is_etg,
        exsitu_frac=f_ex,
        lmm_lookback_gyr=t_lmm,
        lmm_log_mass=log_m_lmm,
        i_mag=i_mag,
        ra=float(rng.uniform(130.0, 230.0)),
        dec=float(rng.uniform(-2.0, 5.0)),
        latents=latents,
        colours=colours,
    )


#: Pixel scale used by the renderer (arcsec).
PIXEL_SCALE = PIXEL_SCALE_ARCSEC
