"""The five domains of the mock universe and how each differs from the reference (``tng100``).

See mock-universe.md ("Five domains") for the reasons behind each shift.
"""

from __future__ import annotations

from dataclasses import dataclass

from ergo_ray.errors import ConfigError
from ergo_ray.types import DOMAINS

__all__ = ["DOMAIN_CODES", "DOMAIN_SHIFTS", "MASS_MODES", "DomainShift", "check_domain"]

#: Integer code of each domain in the random seed sequence.
DOMAIN_CODES: dict[str, int] = {name: i + 1 for i, name in enumerate(DOMAINS)}
#: Stellar-mass sampling modes of :func:`~ergo_ray.mock.population.draw_galaxy`.
MASS_MODES: tuple[str, str] = ("balanced", "population")


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


def check_domain(domain: str) -> DomainShift:
    """Return the shifts of a domain.

    Parameters
    ----------
    domain : str
        One of :data:`~ergo_ray.types.DOMAINS`.

    Returns
    -------
    DomainShift
        The domain's entry of :data:`DOMAIN_SHIFTS`.

    Raises
    ------
    ConfigError
        For an unknown domain.
    """
    if domain not in DOMAIN_SHIFTS:
        msg = f"unknown mock domain {domain!r}; expected one of {', '.join(DOMAINS)}"
        raise ConfigError(msg)
    return DOMAIN_SHIFTS[domain]
