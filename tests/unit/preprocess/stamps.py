"""Sérsic test stamps drawn with GalSim (independent of ergo_ray.mock)."""

from __future__ import annotations

import numpy as np

from ergo_ray.io.cutout import Cutout

PIXEL = 0.168
#: A few Sérsic indices (GalSim builds a table per index; reusing them keeps tests fast).
SERSIC_N = (0.8, 1.0, 1.5, 2.5, 4.0)


def sersic_stamp(
    seed: int,
    size: int = 128,
    *,
    noise: float = 0.03,
    neighbour: bool = False,
    colours: tuple[float, float, float] = (0.6, 1.0, 1.3),
) -> tuple[Cutout, dict]:
    """Return a (g, r, i) Sérsic galaxy stamp with PSF and Gaussian noise, plus its parameters.

    ``params["neighbour_r"]`` is the noise-free r-band light of the neighbour (zeros without
    one) and ``params["model_r"]`` the noise-free r-band light of the galaxy alone.
    """
    import galsim

    rng = np.random.default_rng(seed)
    n = float(rng.choice(SERSIC_N))
    hlr = float(rng.uniform(0.35, 1.3))  # arcsec
    g1, g2 = rng.uniform(-0.35, 0.35, 2)
    flux = float(10 ** rng.uniform(2.8, 3.8))
    psf = galsim.Moffat(beta=3.0, fwhm=float(rng.uniform(0.55, 0.85)))
    gal = galsim.Sersic(n=n, half_light_radius=hlr, flux=flux, trunc=8 * hlr)
    gal = gal.shear(g1=g1, g2=g2)
    scene = gal
    nb_model = np.zeros((size, size))
    if neighbour:
        ang = rng.uniform(0, 2 * np.pi)
        sep = rng.uniform(3.5, 6.0)
        nb = galsim.Exponential(half_light_radius=0.4, flux=flux * rng.uniform(0.2, 0.6))
        nb = nb.shift(sep * np.cos(ang), sep * np.sin(ang))
        scene = scene + nb
        nb_model = galsim.Convolve(nb, psf).drawImage(nx=size, ny=size, scale=PIXEL).array
    img = galsim.Convolve(scene, psf).drawImage(nx=size, ny=size, scale=PIXEL).array
    bands = np.stack([img * c for c in colours]) + rng.normal(0.0, noise, (3, size, size))
    params = {
        "n": n,
        "hlr_px": hlr / PIXEL,
        "flux": flux,
        "model_r": (img - nb_model) * colours[1],
        "neighbour_r": nb_model * colours[1],
    }
    return Cutout(image=bands.astype(np.float32), source=f"sersic-{seed}"), params
