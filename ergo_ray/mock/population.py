"""The population model of the mock universe: one galaxy's physics, no pixels.

:func:`draw_galaxy` turns ``(domain, seed, index)`` into a :class:`Galaxy`: redshift, stellar
mass, type, ex-situ fraction, last major merger, size, structure, colours and the merger
signatures the renderer will draw (formats-and-mocks-research.md §6 steps 1–9; domain shifts of
mock-universe.md). :meth:`Galaxy.view` adds what depends on the projection (orientation,
tidal-feature geometry, PSF, noise depth, field objects), and :meth:`Galaxy.row` returns the
catalogue row with the contract columns, the truth and every latent the renderer uses
(``struct_*``).

The recipe is split over a few modules: :mod:`~ergo_ray.mock.relations` (the scaling relations,
mass function, colours), :mod:`~ergo_ray.mock.domains` (the domain shifts),
:mod:`~ergo_ray.mock.view` (one projection) and :mod:`~ergo_ray.mock.components` (the light
components and tidal features); this module draws the galaxy.

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
from typing import Any

import numpy as np

from ergo_ray.cosmology import TNG_SNAPSHOTS, age_gyr, nearest_tng_snapshot, z_at_age
from ergo_ray.errors import ConfigError
from ergo_ray.mock.components import Component, View
from ergo_ray.mock.domains import (
    DOMAIN_CODES,
    DOMAIN_SHIFTS,
    MASS_MODES,
    DomainShift,
    check_domain,
)
from ergo_ray.mock.relations import (
    HALO_CAP_ARCSEC,
    RE_CAP_ARCSEC,
    RE_MIN_ARCSEC,
    cosmology,
    cww_colours,
    draw_mass,
    expit,
    f_exsitu_median,
    logit,
    major_merger_rate,
    quantise_sersic,
    soft_cap,
)
from ergo_ray.mock.view import galaxy_view

__all__ = [
    "DOMAIN_CODES",
    "DOMAIN_SHIFTS",
    "MASS_MODES",
    "TNG_SNAPSHOTS",
    "Component",
    "DomainShift",
    "Galaxy",
    "View",
    "cosmology",
    "draw_galaxy",
    "f_exsitu_median",
    "major_merger_rate",
]


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

    def view(self, projection: int) -> View:
        """Return projection 0–3 of the galaxy (:func:`~ergo_ray.mock.view.galaxy_view`)."""
        return galaxy_view(self, projection)


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
    shift = _checked_shift(domain, seed, index, mass_mode)
    # The steps below draw from one generator in the order of the recipe (module docstring).
    rng = np.random.default_rng([DOMAIN_CODES[domain], int(seed), int(index)])

    # 1. redshift (snapped to the TNG snapshot grid for simulations)
    z = float(rng.uniform(0.1, 0.4))
    snap = nearest_tng_snapshot(z)
    if shift.snap_redshift:
        z = TNG_SNAPSHOTS[snap]
    cosmo = cosmology(z)
    kpc = cosmo["kpc_per_arcsec"]

    # 2–3. mass and type
    log_m = draw_mass(rng, mass_mode, shift)
    p_etg = float(expit((log_m - 10.6) / 0.3))
    is_etg = bool(rng.uniform() < p_etg)

    f_ex, f_med, dlogit = _draw_exsitu(rng, log_m, is_etg, shift)
    history = _draw_merger_history(rng, z, log_m, f_ex, f_med)
    re = _draw_size(rng, is_etg, log_m, z, dlogit, kpc, shift)
    latents = _draw_structure(rng, is_etg, log_m, f_ex, dlogit, re, shift)
    i_mag, colours = _draw_photometry(rng, is_etg, log_m, z, cosmo["dist_mod"], shift)
    latents |= _draw_signatures(rng, is_etg, log_m, f_ex, p_etg, re, history, shift)
    latents |= {
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
        lmm_lookback_gyr=history.t_lmm,
        lmm_log_mass=history.log_m_lmm,
        i_mag=i_mag,
        ra=float(rng.uniform(130.0, 230.0)),
        dec=float(rng.uniform(-2.0, 5.0)),
        latents=latents,
        colours=colours,
    )


def _checked_shift(domain: str, seed: int, index: int, mass_mode: str) -> DomainShift:
    """Return the domain's shift after checking the arguments of :func:`draw_galaxy`."""
    shift = check_domain(domain)
    if mass_mode not in MASS_MODES:
        msg = f"mass_mode must be one of {MASS_MODES}, got {mass_mode!r}"
        raise ConfigError(msg)
    if seed < 0 or index < 0:
        msg = f"seed and index must be non-negative, got seed={seed}, index={index}"
        raise ConfigError(msg)
    return shift


def _draw_exsitu(
    rng: np.random.Generator, log_m: float, is_etg: bool, shift: DomainShift
) -> tuple[float, float, float]:
    """Step 4: the ex-situ fraction, the median at this mass, and the logit deviation.

    Logit-normal around the median with type offsets and the domain shift. The deviation
    from the reference (tng100) median at this mass and type drives the image channels, so
    a domain's ex-situ shift shows in sizes and profiles as the recipe says.
    """
    f_med = float(f_exsitu_median(log_m))
    mu = float(logit(f_med)) + (0.5 if is_etg else -0.5) + shift.fex_logit
    logit_f = float(rng.normal(mu, 0.8))
    f_ex = float(np.clip(expit(logit_f), 1e-3, 0.99))
    return f_ex, f_med, logit_f - (mu - shift.fex_logit)


@dataclass(frozen=True)
class _History:
    """Step 5's result: last major merger (NaN if none), whether one is imminent, the boost."""

    t_lmm: float
    log_m_lmm: float
    next_merger: bool
    boost: float


def _draw_merger_history(
    rng: np.random.Generator, z: float, log_m: float, f_ex: float, f_med: float
) -> _History:
    """Step 5: inhomogeneous Poisson process in lookback time, rate tied to f_ex."""
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
    return _History(t_lmm, log_m_lmm, next_merger, boost)


def _draw_size(
    rng: np.random.Generator, is_etg: bool, log_m: float, z: float, dlogit: float,
    kpc: float, shift: DomainShift,
) -> float:
    """Step 6: R_e in arcsec, with the f_ex term, redshift evolution and domain shifts."""
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
    re = max(soft_cap(re_arcsec_phys, RE_CAP_ARCSEC), RE_MIN_ARCSEC)
    if shift.size_dex_lowmass:
        # applied after the cap so that the full shift shows in the images
        re *= 10 ** (shift.size_dex_lowmass * float(np.clip((10.8 - log_m) / 0.3, 0, 1)))
    return re


def _draw_structure(
    rng: np.random.Generator, is_etg: bool, log_m: float, f_ex: float, dlogit: float,
    re: float, shift: DomainShift,
) -> dict[str, float]:
    """Step 7: profile latents; concentration rises with the ex-situ excess."""
    if is_etg:
        n = quantise_sersic(
            3.9 + 0.45 * dlogit + float(rng.uniform(-0.6, 0.6)) + shift.sersic_dn, 1.0, 6.0
        )
        bt = 1.0
        q0 = float(rng.uniform(0.45, 0.9))
        bulge_re = re
    else:
        n = quantise_sersic(
            2.8 + 0.3 * dlogit + float(rng.uniform(-0.7, 0.7)) + shift.sersic_dn, 1.0, 5.0
        )
        bt = float(
            np.clip(
                0.15 + 0.55 * expit((log_m - 10.6) / 0.4) + 0.2 * f_ex + rng.normal(0, 0.05),
                0.02,
                0.95,
            )
        )
        q0 = float(rng.uniform(0.1, 0.2))
        bulge_re = float(rng.uniform(0.3, 0.5)) * re
    knot_frac = 0.0 if is_etg else float(rng.uniform(0.05, 0.2) * (1 - bt))
    n_knots = int(rng.integers(15, 40))
    return {
        "re_arcsec": re,
        "sersic_n": n,
        "bt": bt,
        "q_intrinsic": q0,
        "bulge_re_arcsec": bulge_re,
        "knot_frac": knot_frac,
        "n_knots": float(n_knots),
    }


def _draw_photometry(
    rng: np.random.Generator, is_etg: bool, log_m: float, z: float, dist_mod: float,
    shift: DomainShift,
) -> tuple[float, dict[str, tuple[float, float]]]:
    """Step 8: i magnitude (Taylor+11 M/L) and the components' CWW colours."""
    gi_rest = 1.1 if is_etg else 0.7
    abs_i = (1.15 + 0.70 * gi_rest - log_m) / 0.4 + float(rng.normal(0, 0.08))
    i_mag = abs_i + dist_mod
    bulge_col = cww_colours("E", z)
    disk_col = cww_colours("Sbc" if rng.uniform() < 0.6 else "Scd", z)
    jit = rng.normal(0, 0.05, 4)
    colours = {
        "bulge": (bulge_col[0] + jit[0] + shift.gr_shift, bulge_col[1] + jit[1]),
        "disk": (disk_col[0] + jit[2] + shift.gr_shift, disk_col[1] + jit[3]),
        "knots": (cww_colours("Im", z)[0] + shift.gr_shift, cww_colours("Im", z)[1]),
        "halo": (bulge_col[0] - 0.08 + jit[0] + shift.gr_shift, bulge_col[1] - 0.03),
    }
    return i_mag, colours


def _draw_signatures(
    rng: np.random.Generator, is_etg: bool, log_m: float, f_ex: float, p_etg: float,
    re: float, history: _History, shift: DomainShift,
) -> dict[str, float]:
    """Step 9: accreted halo, tidal features and the companion of an ongoing merger."""
    t_lmm = history.t_lmm
    # accreted halo: light fraction ∝ f_ex with 0.3 dex lognormal scatter
    halo_frac = float(np.clip(0.45 * f_ex * 10 ** rng.normal(0, 0.3), 0.0, 0.6))
    halo_re = min(float(rng.uniform(2.5, 3.5)) * re, HALO_CAP_ARCSEC)
    halo_q = float(rng.uniform(0.7, 0.95))
    # tidal features after a recent major merger, fading with time; minor-merger streams
    tidal_frac, tidal_kind = 0.0, 0
    recent = not math.isnan(t_lmm) and t_lmm < 2.0 * shift.tidal_fade_gyr
    u_tid = float(rng.uniform())
    if recent and u_tid < 0.9 * shift.tidal_prob:
        tidal_frac = float(rng.uniform(0.06, 0.16)) * math.exp(-t_lmm / shift.tidal_fade_gyr)
        tidal_kind = 2 if (is_etg and rng.uniform() < 0.6) else 1
    elif u_tid > 1 - min(0.05 * history.boost, 0.3) * shift.tidal_prob:
        tidal_frac = float(rng.uniform(0.02, 0.06))
        tidal_kind = 3
    tidal_frac *= shift.tidal_flux
    halo_offset = float(rng.uniform(0.1, 0.3)) if recent else 0.0
    return {
        "halo_frac": halo_frac,
        "halo_re_arcsec": halo_re,
        "halo_q": halo_q,
        "halo_offset_re": halo_offset,
        "tidal_frac": tidal_frac,
        "tidal_kind": float(tidal_kind),
        **_draw_companion(rng, log_m, p_etg, re, history),
    }


def _draw_companion(
    rng: np.random.Generator, log_m: float, p_etg: float, re: float, history: _History
) -> dict[str, float]:
    """Draw the companion: next major merger within 0.5 Gyr, or the last within 0.2 Gyr."""
    just_merged = not math.isnan(history.t_lmm) and history.t_lmm < 0.2
    comp_flux, comp_sep, comp_re, comp_etg = 0.0, 0.0, 0.0, 0.0
    if history.next_merger or just_merged:
        if just_merged:
            mu_c = 10 ** (history.log_m_lmm - log_m)
            comp_sep = float(rng.uniform(1.5, 6.0))
        else:
            # μ ∝ μ^-1.3 on [0.1, 1] by inverse CDF
            a = -0.3
            uu = float(rng.uniform())
            mu_c = (0.1**a + uu * (1.0 - 0.1**a)) ** (1 / a)
            comp_sep = float(rng.uniform(5.0, 50.0))
        comp_flux = float(mu_c * 10 ** rng.normal(0, 0.1))
        comp_re = max(re * mu_c**0.3 * 10 ** float(rng.normal(0, 0.1)), RE_MIN_ARCSEC)
        comp_etg = float(rng.uniform() < p_etg)
    return {
        "companion_flux": comp_flux,
        "companion_sep_kpc": comp_sep,
        "companion_re_arcsec": comp_re,
        "companion_etg": comp_etg,
    }
