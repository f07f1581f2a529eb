"""The relations of the mock universe's population model (formats-and-mocks-research.md §4).

Stellar-mass function, median ex-situ fraction, major-merger rate, CWW colours, the size cap,
and distances in the TNG cosmology.
"""

from __future__ import annotations

import math
from functools import lru_cache
from typing import TYPE_CHECKING

import numpy as np

from ergo_ray.cosmology import age_gyr, distance_modulus, kpc_per_arcsec

if TYPE_CHECKING:
    from ergo_ray.mock.domains import DomainShift

__all__ = [
    "HALO_CAP_ARCSEC",
    "RE_CAP_ARCSEC",
    "RE_MIN_ARCSEC",
    "SKY_SIGMA",
    "cosmology",
    "cww_colours",
    "draw_mass",
    "expit",
    "f_exsitu_median",
    "logit",
    "major_merger_rate",
    "quantise_sersic",
    "soft_cap",
]

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
RE_CAP_ARCSEC = 0.85
_RE_CAP_POWER = 3.0
RE_MIN_ARCSEC = 0.12
#: Halo radius cap in arcsec (it would otherwise leave the stamp).
HALO_CAP_ARCSEC = 2.4


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


def logit(p: np.ndarray | float) -> np.ndarray:
    """Return log(p / (1 − p)), with p clipped to [1e-6, 1 − 1e-6]."""
    p = np.clip(np.asarray(p, dtype=float), 1e-6, 1 - 1e-6)
    return np.log(p / (1 - p))


def expit(x: np.ndarray | float) -> np.ndarray:
    """Return the logistic function 1 / (1 + exp(−x))."""
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


def draw_mass(rng: np.random.Generator, mode: str, shift: DomainShift) -> float:
    """Draw log10 M★ (one uniform number from ``rng``).

    Parameters
    ----------
    rng : numpy.random.Generator
        The galaxy's generator.
    mode : {"balanced", "population"}
        Uniform (tilted by ``shift.mass_tilt``) or the Baldry+12 mass function.
    shift : DomainShift
        The domain's shifts.

    Returns
    -------
    float
        log10 stellar mass [Msun].
    """
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


def cww_colours(template: str, z: float) -> tuple[float, float]:
    """Observed (g − r, r − i) of a CWW template at redshift ``z`` (interpolated, 0.1–0.4).

    Parameters
    ----------
    template : {"E", "Sbc", "Scd", "Im"}
        The template.
    z : float
        Redshift.

    Returns
    -------
    tuple of float
        g − r and r − i in magnitudes.
    """
    gr, ri = _CWW[template]
    return float(np.interp(z, _CWW_Z, gr)), float(np.interp(z, _CWW_Z, ri))


def soft_cap(r: float, cap: float) -> float:
    """Compress a size above ``cap`` while keeping the ranking: r / (1 + (r/cap)³)^(1/3)."""
    return r / (1.0 + (r / cap) ** _RE_CAP_POWER) ** (1.0 / _RE_CAP_POWER)


def quantise_sersic(n: float, lo: float = 0.5, hi: float = 6.0) -> float:
    """Quantise a Sérsic index to 0.1 within [lo, hi] (GalSim caches one profile per index)."""
    return round(min(max(n, lo), hi) * 10) / 10
