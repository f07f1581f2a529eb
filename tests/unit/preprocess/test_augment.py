"""Batched augmentations: identity, flips, reproducibility, parameter ranges."""

from __future__ import annotations

import pytest
import torch

from ergo_ray.config.schema import AugmentConfig
from ergo_ray.preprocess.augment import augment_batch

OFF = dict(rotation_deg=0.0, translate=0.0, zoom_min=1.0, zoom_max=1.0, flips=False,
           blur_sigma_min=0.0, blur_sigma_max=0.0, noise_sigma_min=0.0, noise_sigma_max=0.0)


def _blobs(n=8, s=32, sigma=2.0):
    yy, xx = torch.meshgrid(torch.arange(s), torch.arange(s), indexing="ij")
    g = torch.exp(-0.5 * ((yy - (s - 1) / 2) ** 2 + (xx - (s - 1) / 2) ** 2) / sigma**2)
    return g.expand(n, 3, s, s).clone()


def _moments(x):
    s = x.shape[-1]
    yy, xx = torch.meshgrid(torch.arange(s, dtype=x.dtype), torch.arange(s, dtype=x.dtype),
                            indexing="ij")
    w = x[:, 0].clamp_min(0)
    tot = w.sum(dim=(1, 2))
    cy = (w * yy).sum(dim=(1, 2)) / tot
    cx = (w * xx).sum(dim=(1, 2)) / tot
    r2 = (w * ((yy - cy[:, None, None]) ** 2 + (xx - cx[:, None, None]) ** 2)).sum((1, 2)) / tot
    return cy, cx, r2


def test_identity_when_everything_is_off():
    x = torch.rand(4, 3, 16, 16)
    out = augment_batch(x, torch.Generator().manual_seed(0), **OFF)
    torch.testing.assert_close(out, x, atol=1e-5, rtol=0)


def test_flips_give_one_of_four_orientations():
    x = torch.rand(16, 3, 12, 12)
    out = augment_batch(x, torch.Generator().manual_seed(1), **(OFF | {"flips": True}))
    seen = set()
    for i in range(16):
        cands = {"id": x[i], "h": x[i].flip(-1), "v": x[i].flip(-2), "hv": x[i].flip(-1, -2)}
        match = [k for k, v in cands.items() if torch.allclose(out[i], v, atol=1e-5)]
        assert match, i
        seen.add(match[0])
    assert len(seen) >= 3


def test_reproducible_with_the_generator_seed():
    x = torch.rand(6, 3, 24, 24)
    cfg = AugmentConfig().model_dump()
    a = augment_batch(x, torch.Generator().manual_seed(7), **cfg)
    b = augment_batch(x, torch.Generator().manual_seed(7), **cfg)
    c = augment_batch(x, torch.Generator().manual_seed(8), **cfg)
    torch.testing.assert_close(a, b)
    assert not torch.allclose(a, c)
    assert a.shape == x.shape and a.dtype == x.dtype


def test_translation_rotation_and_zoom_ranges():
    s = 48
    x = _blobs(n=64, s=s, sigma=2.5)
    g = torch.Generator().manual_seed(3)
    out = augment_batch(x, g, **(OFF | {"translate": 0.25}))
    cy, cx, _ = _moments(out)
    shift = torch.maximum((cy - (s - 1) / 2).abs(), (cx - (s - 1) / 2).abs())
    assert shift.max() <= 0.25 * s + 0.5
    assert shift.max() > 0.15 * s
    zoomed = augment_batch(x, g, **(OFF | {"zoom_min": 1.0, "zoom_max": 1.1}))
    _, _, r2 = _moments(zoomed)
    _, _, r2_0 = _moments(x)
    ratio = (r2 / r2_0).sqrt()
    assert ratio.min() > 0.98 and ratio.max() < 1.12 and ratio.max() > 1.05
    # Rotation of an elongated bar stays within +-15 degrees.
    bar = torch.zeros(32, 3, s, s)
    bar[:, :, s // 2 - 1 : s // 2 + 1, 8:-8] = 1.0
    rot = augment_batch(bar, g, **(OFF | {"rotation_deg": 15.0}))
    w = rot[:, 0]
    yy, xx = torch.meshgrid(torch.arange(s, dtype=w.dtype), torch.arange(s, dtype=w.dtype),
                            indexing="ij")
    tot = w.sum((1, 2))
    cyy = (w * (yy - (s - 1) / 2) ** 2).sum((1, 2)) / tot
    cxx = (w * (xx - (s - 1) / 2) ** 2).sum((1, 2)) / tot
    cxy = (w * (yy - (s - 1) / 2) * (xx - (s - 1) / 2)).sum((1, 2)) / tot
    angle = torch.rad2deg(0.5 * torch.atan2(2 * cxy, cxx - cyy)).abs()
    assert angle.max() <= 15.5 and angle.max() > 8


def test_noise_and_blur():
    x = torch.full((32, 3, 32, 32), 0.5)
    out = augment_batch(x, torch.Generator().manual_seed(4),
                        **(OFF | {"noise_sigma_min": 0.01, "noise_sigma_max": 0.08}))
    std = (out - 0.5).std(dim=(1, 2, 3))
    assert std.min() > 0.008 and std.max() < 0.085
    assert std.max() - std.min() > 0.03
    spike = torch.zeros(2, 3, 21, 21)
    spike[:, :, 10, 10] = 1.0
    blurred = augment_batch(spike, torch.Generator().manual_seed(5),
                            **(OFF | {"blur_sigma_min": 2.0, "blur_sigma_max": 2.0}))
    assert blurred[:, :, 10, 10].max() < 0.05
    torch.testing.assert_close(blurred.sum(dim=(2, 3)), torch.ones(2, 3), atol=1e-4, rtol=0)
    # The method's blur (sigma <= 0.1 px) is almost the identity.
    faint = augment_batch(spike, torch.Generator().manual_seed(5),
                          **(OFF | {"blur_sigma_min": 1e-4, "blur_sigma_max": 0.1}))
    assert faint[:, :, 10, 10].min() > 0.99


def test_rejects_non_batches():
    with pytest.raises(ValueError, match="expected a batch"):
        augment_batch(torch.rand(3, 8, 8), torch.Generator())
