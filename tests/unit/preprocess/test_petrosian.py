"""Petrosian radii against an independent photutils curve-of-growth reference."""

from __future__ import annotations

import numpy as np
import pytest

from ergo_ray.errors import BadObjectError
from ergo_ray.mock import render
from ergo_ray.preprocess import reasons
from ergo_ray.preprocess.petrosian import (
    ANNULUS,
    PETROSIAN_ETA,
    TOTAL_FLUX_FACTOR,
    measure_petrosian,
)
from tests.unit.preprocess.stamps import sersic_stamp


def _first_crossing(x, y, level):
    up = y[0] < level
    hit = np.flatnonzero(y >= level) if up else np.flatnonzero(y < level)
    if hit.size == 0 or hit[0] == 0:
        return np.nan
    k = hit[0]
    return x[k - 1] + (level - y[k - 1]) / (y[k] - y[k - 1]) * (x[k] - x[k - 1])


def reference_radii(band: np.ndarray, bad: np.ndarray, box: int = 20, nsigma: float = 3.0,
                    npix: int = 16) -> tuple[float, float, float]:
    """Same definitions, built from astropy/photutils: detection, centroid, exact apertures."""
    from astropy.convolution import Gaussian2DKernel, convolve
    from astropy.stats import sigma_clipped_stats
    from photutils.profiles import CurveOfGrowth
    from photutils.segmentation import SourceCatalog, detect_sources

    h, w = band.shape
    c = h // 2
    lo = np.median(band[~bad])
    hi = np.percentile(band[c - box // 2 : c + box // 2, c - box // 2 : c + box // 2], 99)
    s = np.clip((band - lo) / (hi - lo), 0, 1)
    _, med, std = sigma_clipped_stats(s, mask=bad, sigma=3.0, maxiters=5)
    kernel = Gaussian2DKernel(3.0 / 2.3548, x_size=3, y_size=3)
    kernel.normalize()
    smooth = convolve(s, kernel, boundary="extend")
    segm = detect_sources(smooth, med + nsigma * std, n_pixels=npix, mask=bad)
    lab = segm.data[c, c] if segm.data[c, c] else None
    if lab is None:
        ys, xs = np.nonzero(segm.data)
        k = np.argmin((ys - (h - 1) / 2) ** 2 + (xs - (w - 1) / 2) ** 2)
        lab = segm.data[ys[k], xs[k]]
    _, bkg, _ = sigma_clipped_stats(band, mask=(segm.data > 0) | bad, sigma=3.0, maxiters=5)
    data = band - bkg
    cat = SourceCatalog(np.clip(data, 0, None), segm)
    src = cat.select_label(lab)
    xc, yc = float(src.x_centroid), float(src.y_centroid)
    mask = bad | ((segm.data > 0) & (segm.data != lab))
    r_max = min(xc + 0.5, w - 0.5 - xc, yc + 0.5, h - 0.5 - yc) - 0.5
    radii = np.arange(0.5, r_max, 0.5)
    cog = CurveOfGrowth(data, (xc, yc), radii, mask=mask, method="exact")
    prof = np.asarray(cog.profile)
    a_in, a_out = ANNULUS
    r = radii[(radii >= 1.0) & (radii * a_out <= r_max)]
    f_in, f_out, f_r = (np.interp(r * a, radii, prof) for a in (a_in, a_out, 1.0))
    with np.errstate(divide="ignore", invalid="ignore"):
        eta = ((f_out - f_in) / (a_out**2 - a_in**2)) / f_r
    r_p = _first_crossing(r, eta, PETROSIAN_ETA)
    f_tot = np.interp(min(TOTAL_FLUX_FACTOR * r_p, radii[-1]), radii, prof)
    sel = radii <= TOTAL_FLUX_FACTOR * r_p
    r50 = _first_crossing(radii[sel], prof[sel] / f_tot, 0.5)
    r90 = _first_crossing(radii[sel], prof[sel] / f_tot, 0.9)
    return r_p, r50, r90


def _agreement(pairs):
    """Relative R50/R90 differences: ours on the stamp, the reference on the stamp with the
    neighbours' noise-free light subtracted (a perfect deblend)."""
    rel50, rel90 = [], []
    for cut, neighbours in pairs:
        bad = cut.bad_pixels()[1]
        ours = measure_petrosian(cut.image[1], bad)
        _, r50, r90 = reference_radii(cut.image[1] - neighbours, bad)
        rel50.append(abs(ours.r50_px / r50 - 1))
        rel90.append(abs(ours.r90_px / r90 - 1))
    return np.array(rel50), np.array(rel90)


def test_radii_agree_with_photutils_on_sersic_stamps():
    pairs = []
    for s in range(20):
        cut, p = sersic_stamp(s, neighbour=(s % 3 == 0))
        pairs.append((cut, p["neighbour_r"]))
    rel50, rel90 = _agreement(pairs)
    assert np.mean(rel50 <= 0.10) >= 0.9, rel50
    assert np.mean(rel90 <= 0.10) >= 0.9, rel90
    assert np.median(rel50) < 0.03 and np.median(rel90) < 0.03


@pytest.mark.slow
def test_radii_agree_with_photutils_on_mock_galaxies():
    # Mock HSC-like and TNG-like stamps with interlopers, stars and correlated noise; the
    # reference sees the same noisy pixels with the field objects' light removed.
    pairs = []
    for domain in ("hsc", "tng100"):
        for i in range(22):
            _, cut = render.mock_object(domain, 7, i, 0, 128)
            _, scene = render.mock_object(domain, 7, i, 0, 128, noise=False, field=True)
            _, host = render.mock_object(domain, 7, i, 0, 128, noise=False, field=False)
            try:
                measure_petrosian(cut.image[1], cut.bad_pixels()[1])
            except BadObjectError:
                continue  # a failed fit is dropped, as in the method
            pairs.append((cut, scene.image[1] - host.image[1]))
    assert len(pairs) >= 40
    rel50, rel90 = _agreement(pairs)
    assert np.mean(rel50 <= 0.10) >= 0.9, rel50
    assert np.mean(rel90 <= 0.10) >= 0.9, rel90


def test_radii_track_the_true_half_light_radius():
    # Low noise: R50 is close to the half-light radius of the PSF-convolved model measured by
    # GalSim (circular apertures about the centroid, all flux in the stamp; the Petrosian
    # flux misses a little of the wings of high-n profiles, so R50 comes out a bit smaller).
    import galsim

    for seed in range(6):
        cut, p = sersic_stamp(seed, noise=0.002)
        hlr = galsim.Image(np.ascontiguousarray(p["model_r"]), scale=1.0).calculateHLR()
        res = measure_petrosian(cut.image[1], cut.bad_pixels()[1])
        assert 0.8 * hlr < res.r50_px < 1.05 * hlr, (res.r50_px, hlr, p["n"])
        assert res.r90_px > res.r50_px and res.petro_r_px > res.r50_px
        assert abs(res.x_c - 63.5) < 1.0 and abs(res.y_c - 63.5) < 1.0


def test_neighbour_is_masked():
    cut, _ = sersic_stamp(5, noise=0.01)
    base = measure_petrosian(cut.image[1])
    import galsim

    nb = galsim.Exponential(half_light_radius=0.5, flux=3000.0).shift(5.0, 0.0)
    img = nb.drawImage(nx=128, ny=128, scale=0.168).array.astype(np.float32)
    with_nb = measure_petrosian(cut.image[1] + img)
    assert with_nb.r90_px == pytest.approx(base.r90_px, rel=0.05)
    assert abs(with_nb.x_c - base.x_c) < 1.0


def test_bad_pixels_are_ignored():
    cut, _ = sersic_stamp(2, noise=0.01)
    band = cut.image[1].copy()
    bad = np.zeros_like(band, dtype=bool)
    bad[10:30, 90:120] = True
    band[bad] = 1e6  # saturated junk in the masked region
    band[5, 5] = np.nan
    res = measure_petrosian(band, bad)
    ref = measure_petrosian(cut.image[1])
    assert res.r90_px == pytest.approx(ref.r90_px, rel=0.03)


def test_named_failures():
    rng = np.random.default_rng(0)
    noise = rng.normal(0, 1, (64, 64)).astype(np.float32)
    with pytest.raises(BadObjectError) as err:
        measure_petrosian(noise)
    assert err.value.reason == reasons.NO_SOURCE
    with pytest.raises(BadObjectError) as err:
        measure_petrosian(noise, np.ones_like(noise, dtype=bool))
    assert err.value.reason == reasons.ALL_MASKED
    with pytest.raises(BadObjectError) as err:
        measure_petrosian(np.full((64, 64), np.nan, dtype=np.float32))
    assert err.value.reason == reasons.ALL_MASKED
    with pytest.raises(BadObjectError) as err:
        measure_petrosian(np.zeros((4, 4), dtype=np.float32))
    assert err.value.reason == reasons.BAD_SHAPE
    # The only source sits at the stamp edge: no aperture fits around it.
    yy, xx = np.mgrid[0:24, 0:24]
    blob = 100 * np.exp(-0.5 * np.hypot(yy - 3, xx - 3) ** 2 / 2.0**2) + noise[:24, :24] * 0.1
    with pytest.raises(BadObjectError) as err:
        measure_petrosian(blob.astype(np.float32), central_box_px=24)
    assert err.value.reason == reasons.NO_PETROSIAN_RADIUS
