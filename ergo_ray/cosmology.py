"""The one cosmology of ergo_ray and the TNG snapshot table.

Every distance, age and size conversion in the package uses IllustrisTNG's cosmology (Planck
2015: flat ΛCDM, H0 = 67.74 km/s/Mpc, Ωm = 0.3089, Ωb = 0.0486, no radiation) through
astropy's ``FlatLambdaCDM``. The training set is simulated in it, so observed galaxies are put
on the same scale with it too: a simulated and an observed galaxy of the same angular size at
the same redshift then have the same size in kpc.

astropy is imported on first use, so importing this module stays cheap.
"""

from __future__ import annotations

from functools import lru_cache
from typing import TYPE_CHECKING

import numpy as np

if TYPE_CHECKING:
    from astropy.cosmology import FlatLambdaCDM

__all__ = [
    "H0",
    "H_LITTLE",
    "OB0",
    "OM0",
    "TNG_SNAPSHOTS",
    "age_gyr",
    "distance_modulus",
    "kpc_per_arcsec",
    "nearest_tng_snapshot",
    "tng_cosmology",
    "z_at_age",
]

#: Hubble constant of TNG, km/s/Mpc.
H0 = 67.74
#: Little-h of TNG.
H_LITTLE = H0 / 100.0
#: Matter density parameter of TNG.
OM0 = 0.3089
#: Baryon density parameter of TNG.
OB0 = 0.0486

#: TNG snapshot number → redshift, snapshots 72–91 (z 0.40–0.10; formats research §2.5).
TNG_SNAPSHOTS: dict[int, float] = {
    72: 0.3999,
    73: 0.3802,
    74: 0.3607,
    75: 0.3479,
    76: 0.3288,
    77: 0.3101,
    78: 0.2977,
    79: 0.2734,
    80: 0.2613,
    81: 0.2435,
    82: 0.2260,
    83: 0.2144,
    84: 0.1973,
    85: 0.1804,
    86: 0.1693,
    87: 0.1527,
    88: 0.1419,
    89: 0.1258,
    90: 0.1099,
    91: 0.0994,
}
_SNAP_NUMS = np.array(sorted(TNG_SNAPSHOTS), dtype=np.int64)
_SNAP_Z = np.array([TNG_SNAPSHOTS[int(s)] for s in _SNAP_NUMS])

# Redshift grid on which the age is tabulated to invert it (astropy has no closed-form
# inverse); spacing 0.002 keeps the interpolation error below 1e-5 Gyr up to z = 3.
_AGE_GRID_Z = np.concatenate([np.arange(0.0, 3.0, 0.002), np.geomspace(3.0, 1100.0, 2000)])


@lru_cache(maxsize=1)
def tng_cosmology() -> FlatLambdaCDM:
    """Return the TNG cosmology as an astropy ``FlatLambdaCDM``.

    Returns
    -------
    astropy.cosmology.FlatLambdaCDM
        ``FlatLambdaCDM(H0=67.74, Om0=0.3089, Ob0=0.0486)`` (no radiation, ``Tcmb0 = 0``).
    """
    from astropy.cosmology import FlatLambdaCDM

    return FlatLambdaCDM(H0=H0, Om0=OM0, Ob0=OB0, name="IllustrisTNG (Planck 2015)")


def _quantity(method: str, z: np.ndarray | float) -> np.ndarray:
    value = getattr(tng_cosmology(), method)(np.asarray(z, dtype=np.float64)).value
    return np.asarray(value, dtype=np.float64)


def kpc_per_arcsec(z: np.ndarray | float) -> np.ndarray:
    """Proper kpc per arcsec at redshift ``z``.

    ``z`` (float or array, ≥ 0) → proper kpc per arcsec, the shape of ``z``.
    """
    return _quantity("kpc_proper_per_arcmin", z) / 60.0


def distance_modulus(z: np.ndarray | float) -> np.ndarray:
    """Distance modulus in magnitudes at redshift ``z`` > 0.

    ``z`` (float or array, > 0) → ``5 log10(D_L / 10 pc)``, the shape of ``z``.
    """
    return _quantity("distmod", z)


def age_gyr(z: np.ndarray | float) -> np.ndarray:
    """Age of the universe in Gyr at redshift ``z``.

    ``z`` (float or array, ≥ 0) → age in Gyr, the shape of ``z``.
    """
    return _quantity("age", z)


@lru_cache(maxsize=1)
def _age_table() -> tuple[np.ndarray, np.ndarray]:
    ages = age_gyr(_AGE_GRID_Z)
    return ages[::-1].copy(), _AGE_GRID_Z[::-1].copy()  # increasing age


def z_at_age(t_gyr: np.ndarray | float) -> np.ndarray:
    """Redshift at which the universe had age ``t_gyr`` (the inverse of :func:`age_gyr`).

    Parameters
    ----------
    t_gyr : float or numpy.ndarray
        Age(s) in Gyr, between the age at z = 1100 and today's.

    Returns
    -------
    numpy.ndarray
        Redshift(s), the shape of ``t_gyr`` (linear interpolation of astropy's ages).
    """
    ages, zs = _age_table()
    return np.interp(np.asarray(t_gyr, dtype=np.float64), ages, zs)


def nearest_tng_snapshot(z: float) -> int:
    """Return the TNG snapshot (72–91) whose redshift is nearest to ``z``.

    Parameters
    ----------
    z : float
        Redshift; a non-finite value gives snapshot 91 (z ≈ 0.1).

    Returns
    -------
    int
        Snapshot number.
    """
    if not np.isfinite(z):
        return int(_SNAP_NUMS[-1])
    return int(_SNAP_NUMS[np.argmin(np.abs(_SNAP_Z - z))])
