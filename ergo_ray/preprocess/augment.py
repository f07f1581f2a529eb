"""Batched augmentations for contrastive training, on the training device (method.md §3.4).

In the method's order, per image: a random affine map (rotation ±``rotation_deg``,
translation up to ``translate`` × the image side on each axis, zoom in
[``zoom_min``, ``zoom_max``]), horizontal and vertical flips with p = 0.5, a Gaussian blur
with σ ~ U[``blur_sigma_min``, ``blur_sigma_max``] px (13-px kernel, reflect padding) and
additive Gaussian noise with σ ~ U[``noise_sigma_min``, ``noise_sigma_max``].

The affine map and the flips are one ``affine_grid`` + ``grid_sample`` (bilinear, zeros
outside, as torchvision's ``RandomAffine`` fills with 0); the blur is one grouped separable
convolution with a kernel per image. Every random number comes from the caller's
``torch.Generator``, so a batch is reproducible from the generator's seed. No PIL.
"""

from __future__ import annotations

import torch
import torch.nn.functional as F

__all__ = ["BLUR_KERNEL", "augment_batch"]

#: Gaussian-blur kernel size in pixels (torchvision's ``GaussianBlur(13)`` in the method).
BLUR_KERNEL = 13


def _uniform(n: int, lo: float, hi: float, gen: torch.Generator) -> torch.Tensor:
    return lo + (hi - lo) * torch.rand(n, generator=gen, device=gen.device)


def _affine_theta(
    n: int,
    rotation_deg: float,
    translate: float,
    zoom_min: float,
    zoom_max: float,
    flips: bool,
    gen: torch.Generator,
) -> torch.Tensor:
    """Return sampling matrices (N, 2, 3) mapping output to input coordinates (normalised)."""
    ang = torch.deg2rad(_uniform(n, -rotation_deg, rotation_deg, gen))
    # torchvision draws the shift in whole pixels up to translate * side; in normalised
    # coordinates ([-1, 1] across the image) a shift of f * side is 2 f.
    tx = _uniform(n, -translate, translate, gen) * 2.0
    ty = _uniform(n, -translate, translate, gen) * 2.0
    zoom = _uniform(n, zoom_min, zoom_max, gen)
    if flips:
        fx = torch.where(torch.rand(n, generator=gen, device=gen.device) < 0.5, -1.0, 1.0)
        fy = torch.where(torch.rand(n, generator=gen, device=gen.device) < 0.5, -1.0, 1.0)
    else:
        fx = fy = torch.ones(n, device=gen.device)
    # Forward map: p' = F (zoom R p + t). Inverse: p = R^T (F p' - t) / zoom.
    cos, sin = torch.cos(ang), torch.sin(ang)
    a11, a12 = cos / zoom, sin / zoom
    a21, a22 = -sin / zoom, cos / zoom
    theta = torch.empty(n, 2, 3, device=gen.device)
    theta[:, 0, 0] = a11 * fx
    theta[:, 0, 1] = a12 * fy
    theta[:, 1, 0] = a21 * fx
    theta[:, 1, 1] = a22 * fy
    theta[:, 0, 2] = -(a11 * tx + a12 * ty)
    theta[:, 1, 2] = -(a21 * tx + a22 * ty)
    return theta


def _blur(x: torch.Tensor, sigma: torch.Tensor, size: int) -> torch.Tensor:
    """Separable Gaussian blur with one sigma per image (reflect padding)."""
    n, c, h, w = x.shape
    half = size // 2
    t = torch.arange(-half, half + 1, device=x.device, dtype=x.dtype)
    s = sigma.to(x.device, x.dtype).clamp_min(1e-6)[:, None]
    k = torch.exp(-0.5 * (t[None, :] / s) ** 2)
    k = k / k.sum(dim=1, keepdim=True)  # (N, size)
    k = k.repeat_interleave(c, dim=0)  # (N*C, size)
    y = x.reshape(1, n * c, h, w)
    pad_w = min(half, w - 1)
    pad_h = min(half, h - 1)
    y = F.pad(y, (pad_w, pad_w, 0, 0), mode="reflect")
    y = F.conv2d(y, k[:, None, None, half - pad_w : half + pad_w + 1], groups=n * c)
    y = F.pad(y, (0, 0, pad_h, pad_h), mode="reflect")
    y = F.conv2d(y, k[:, None, half - pad_h : half + pad_h + 1, None], groups=n * c)
    return y.reshape(n, c, h, w)


def augment_batch(
    x: torch.Tensor,
    generator: torch.Generator,
    *,
    rotation_deg: float = 15.0,
    translate: float = 0.25,
    zoom_min: float = 1.0,
    zoom_max: float = 1.1,
    flips: bool = True,
    blur_sigma_min: float = 1e-4,
    blur_sigma_max: float = 0.1,
    noise_sigma_min: float = 0.01,
    noise_sigma_max: float = 0.08,
) -> torch.Tensor:
    """Return one random view of every image of a batch.

    Parameters
    ----------
    x : torch.Tensor
        float (N, C, S, S) in [0, 1] (prepared uint8 / 255), on the training device.
    generator : torch.Generator
        Source of every random number; on ``x``'s device for speed (a CPU generator with a
        GPU batch also works: the parameters are drawn on the CPU and moved).
    rotation_deg : float
        Rotation drawn from U[-rotation_deg, rotation_deg] degrees.
    translate : float
        Shift on each axis drawn from U[-translate, translate] × the image side.
    zoom_min, zoom_max : float
        Zoom factor range.
    flips : bool
        Random horizontal and vertical flips (p = 0.5 each).
    blur_sigma_min, blur_sigma_max : float
        Gaussian-blur sigma range in pixels (``blur_sigma_max = 0`` switches it off).
    noise_sigma_min, noise_sigma_max : float
        Additive Gaussian noise sigma range.

    Notes
    -----
    The keyword arguments are the fields of :class:`~ergo_ray.config.schema.AugmentConfig`
    (``cfg.clr.augment``): ``augment_batch(x, g, **cfg.clr.augment.model_dump())``.

    Returns
    -------
    torch.Tensor
        Augmented float batch of the same shape, dtype and device. Noise is not clipped,
        as in the method.
    """
    if x.ndim != 4:
        msg = f"expected a batch (N, C, S, S), got shape {tuple(x.shape)}"
        raise ValueError(msg)
    n = x.shape[0]
    if n == 0:
        return x
    dev = x.device
    theta = _affine_theta(n, rotation_deg, translate, zoom_min, zoom_max, flips, generator)
    grid = F.affine_grid(theta.to(dev, x.dtype), list(x.shape), align_corners=False)
    out = F.grid_sample(x, grid, mode="bilinear", padding_mode="zeros", align_corners=False)
    sig_b = _uniform(n, blur_sigma_min, blur_sigma_max, generator)
    if blur_sigma_max > 0:
        out = _blur(out, sig_b, BLUR_KERNEL)
    sig_n = _uniform(n, noise_sigma_min, noise_sigma_max, generator).to(dev, x.dtype)
    noise = torch.randn(out.shape, generator=generator, device=generator.device)
    out = out + sig_n[:, None, None, None] * noise.to(dev, x.dtype)
    return out
