"""The fast paths of the Petrosian measurement against simple slow references."""

from __future__ import annotations

import numpy as np
import pytest
from scipy import ndimage

from ergo_ray.preprocess import detection, petrosian
from ergo_ray.preprocess.stats import median, percentile, sigma_clipped_stats


@pytest.mark.parametrize("dtype", [np.float32, np.float64])
def test_median_and_percentile_equal_numpy(dtype):
    rng = np.random.default_rng(0)
    for n in (1, 2, 3, 10, 101, 1000):
        x = rng.normal(size=n).astype(dtype)
        assert median(x) == float(np.median(x))
        for q in (0.0, 1.0, 37.5, 50.0, 99.0, 100.0):
            assert percentile(x, q) == float(np.percentile(x, q)), (n, q)
        # Placeholders below every value are skipped without changing the median.
        padded = np.concatenate([x, np.full(7, -1e30, dtype)])
        rng.shuffle(padded)
        assert median(padded, skip=7) == float(np.median(x))
    assert np.isnan(median(np.zeros(0))) and np.isnan(percentile(np.zeros(0), 50.0))


def _clipped_reference(v, sigma=3.0, maxiters=5):
    v = np.asarray(v, dtype=np.float64)
    for _ in range(maxiters):
        med, std = np.median(v), v.std()
        keep = np.abs(v - med) <= sigma * std
        if keep.all() or keep.sum() < 3:
            break
        v = v[keep]
    return float(np.median(v)), float(v.std())


def test_sigma_clipped_stats_equal_iterative_clipping():
    rng = np.random.default_rng(1)
    for k in range(20):
        x = np.concatenate([rng.normal(5.0, 2.0, 2000), rng.exponential(40.0, 30 + k)])
        if k % 2:
            x = np.clip((x - 5.0) / 20.0, 0.0, 1.0)  # many ties at 0, as in detection
        x = x.astype(np.float32)
        got, ref = sigma_clipped_stats(x), _clipped_reference(x)
        assert got == pytest.approx(ref, rel=1e-6, abs=1e-9)


def _deblend_reference(smooth, seg, thresh, min_area):
    """The multi-threshold deblending, one full labelling of the segment per level."""
    vals = smooth[seg]
    peak, total, base = float(vals.max()), float(vals.sum()), max(thresh, 1e-6)
    if peak <= base * 1.01:
        return seg.astype(np.int32)
    n_lev = detection.DEBLEND_LEVELS
    levels = base * (peak / base) ** (np.arange(1, n_lev + 1) / (n_lev + 1))
    seeds, n_seeds = seg.astype(np.int32), 1
    for t in levels:
        above = (smooth > t) & seg
        if above.sum() == 0 or above.sum() < 2 * min_area:
            break
        comp, n = ndimage.label(above, structure=np.ones((3, 3), bool))
        area = np.bincount(comp.ravel(), minlength=n + 1)
        flux = np.bincount(comp.ravel(), weights=(smooth - t).ravel(), minlength=n + 1)
        sig = (area >= min_area) & (flux >= detection.DEBLEND_CONTRAST * total)
        sig[0] = False
        children: dict[int, list[int]] = {}
        for c in np.flatnonzero(sig):
            parent = int(seeds[comp == c][0])
            children.setdefault(parent, []).append(int(c))
        for p in sorted(children):
            if len(children[p]) >= 2:
                seeds[seeds == p] = 0
                for c in children[p]:
                    n_seeds += 1
                    seeds[comp == c] = n_seeds
    _, inv = np.unique(seeds, return_inverse=True)
    return inv.reshape(seeds.shape).astype(np.int32)


def _blended_segment(seed):
    """Smoothed noisy image of 1-3 Gaussian blobs and the segment under its centre."""
    rng = np.random.default_rng(seed)
    yy, xx = np.mgrid[0:64, 0:64]
    img = np.zeros((64, 64))
    for k in range(int(rng.integers(1, 4))):
        cy, cx = (32, 32) if k == 0 else rng.uniform(14, 50, 2)
        img += rng.uniform(0.3, 1.0) * np.exp(
            -((yy - cy) ** 2 + (xx - cx) ** 2) / (2 * rng.uniform(2.0, 5.0) ** 2)
        )
    img += rng.normal(0, 0.02, img.shape)
    smooth = detection._smooth3(img.astype(np.float32))
    thresh = 0.06
    labels, _ = ndimage.label(smooth > thresh, structure=np.ones((3, 3), bool))
    return smooth, labels == labels[32, 32], thresh


@pytest.mark.parametrize("seed", range(12))
def test_deblend_equals_level_by_level_reference(seed):
    smooth, seg, thresh = _blended_segment(seed)
    assert seg.any()
    got = detection._deblend(smooth, seg, thresh, 8)
    np.testing.assert_array_equal(got, _deblend_reference(smooth, seg, thresh, 8))


def test_deblend_reference_cases_include_splits():
    n_split = sum(
        _deblend_reference(*_blended_segment(seed), 8).max() > 1 for seed in range(12)
    )
    assert 3 <= n_split < 12


def test_curve_of_growth_equals_direct_ramp_sums():
    rng = np.random.default_rng(3)
    flux = rng.normal(1.0, 1.0, (40, 50)).astype(np.float32)
    yc, xc = 19.3, 24.6
    yy, xx = np.mgrid[0:40, 0:50]
    dist = np.sqrt((yy - yc) ** 2 + (xx - xc) ** 2).astype(np.float32)
    radii, cog = petrosian._curve_of_growth(flux.ravel(), dist.ravel(), 18.0)
    for r in (0.0, 0.4, 1.0, 3.05, 7.5, 12.35, 17.95):
        k = round(r / petrosian.GRID_STEP)
        ramp = np.clip(r - dist.astype(np.float64) + 0.5, 0.0, 1.0)
        direct = float((flux.astype(np.float64) * ramp).sum())
        assert radii[k] == pytest.approx(r)
        assert cog[k] == pytest.approx(direct, rel=1e-9, abs=1e-6)


def test_ring_mean_equals_masked_ring_means():
    rng = np.random.default_rng(4)
    img = rng.normal(size=(30, 30)).astype(np.float32)
    ring = np.sqrt((np.mgrid[0:30, 0:30] - 14.2) ** 2).sum(axis=0).astype(np.intp)
    use = rng.random((30, 30)) > 0.3
    nr = int(ring.max()) + 1
    got = petrosian._ring_mean(img, ring, use, nr)
    for r in range(nr):
        sel = (ring == r) & use
        assert got[r] == pytest.approx(img[sel].mean() if sel.any() else 0.0, rel=1e-6)


def test_binning_helpers():
    img = np.arange(7 * 9, dtype=np.float32).reshape(7, 9)
    np.testing.assert_allclose(detection._bin2(img), img[:6, :8].reshape(3, 2, 4, 2).mean((1, 3)))
    mask = np.zeros((7, 9), bool)
    mask[3, 4] = True
    assert detection._bin2_any(mask).sum() == 1 and detection._bin2_any(mask)[1, 2]
    up = detection._upsample2(np.arange(12).reshape(3, 4), (7, 9))
    assert up.shape == (7, 9) and up[5, 7] == 11 and up[6, 8] == 11 and up[0, 1] == 0


def test_binned_deblending_and_window_against_full_resolution(monkeypatch):
    """The 2 x 2-binned deblending (stamps >= BIN_MIN_PX) against deblending at full
    resolution; the curve of growth in a window against the whole stamp (identical)."""
    from tests.unit.preprocess.stamps import sersic_stamp

    stamps = [sersic_stamp(s, neighbour=True)[0].image[1] for s in range(10)]
    assert min(stamps[0].shape) >= detection.BIN_MIN_PX
    fast = [petrosian.measure_petrosian(b) for b in stamps]
    monkeypatch.setattr(petrosian, "WINDOW_RADIUS_PX", np.inf)
    whole = [petrosian.measure_petrosian(b) for b in stamps]
    assert [r.r90_px for r in fast] == [r.r90_px for r in whole]
    monkeypatch.setattr(detection, "BIN_MIN_PX", 10**9)
    full = [petrosian.measure_petrosian(b) for b in stamps]
    rel = np.array([f.r90_px / r.r90_px - 1 for f, r in zip(fast, full, strict=True)])
    assert np.median(np.abs(rel)) < 0.01 and np.all(np.abs(rel) < 0.10), rel
    assert np.all([abs(f.x_c - r.x_c) < 0.5 for f, r in zip(fast, full, strict=True)])
