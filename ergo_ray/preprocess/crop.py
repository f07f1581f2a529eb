"""Central square crop of ``crop_factor`` × R90 and resize to the network's input size.

Rule (method.md §2.2): the crop is a square of side ``crop_factor × R90`` centred on the
stamp centre (where the catalogue position lies). When that side exceeds the stamp, the
whole stamp is kept — for a non-square stamp, the central square of side ``min(H, W)`` —
and nothing is padded. The side need not be a whole number of pixels: the resize works on
the exact fractional window.

Resizing is a separable linear map ``out = R_y @ image @ R_x.T`` per band: exact area
averaging when shrinking (every source pixel contributes its overlap with the output pixel)
and bilinear interpolation at output-pixel centres when enlarging (skimage ``resize`` with
``order=1`` behaves alike). Both are matrix products, fast in numpy for a whole stamp.
"""

from __future__ import annotations

import numpy as np

__all__ = ["crop_and_resize", "crop_side", "resize_matrix"]


def crop_side(r90_px: float, crop_factor: float, height: int, width: int) -> float:
    """Return the side of the square crop in pixels.

    Parameters
    ----------
    r90_px : float
        Petrosian 90 % radius in pixels.
    crop_factor : float
        Multiple of R90 (method: 4).
    height, width : int
        Stamp size.

    Returns
    -------
    float
        ``min(crop_factor * r90_px, height, width)``.
    """
    return float(min(crop_factor * r90_px, height, width))


def resize_matrix(n_in: int, start: float, length: float, n_out: int) -> np.ndarray:
    """Matrix mapping a 1-D signal of ``n_in`` pixels to ``n_out`` samples of a window.

    Parameters
    ----------
    n_in : int
        Number of source pixels; pixel ``i`` covers [i, i + 1) in edge coordinates.
    start : float
        Window start in edge coordinates.
    length : float
        Window length (> 0).
    n_out : int
        Number of output pixels; output pixel ``j`` covers
        [start + j·length/n_out, start + (j + 1)·length/n_out).

    Returns
    -------
    numpy.ndarray
        float32 (n_out, n_in); each row sums to 1.
    """
    scale = length / n_out
    if scale >= 1.0:
        lo = start + np.arange(n_out) * scale
        hi = lo + scale
        src = np.arange(n_in, dtype=np.float64)
        ov = np.minimum(hi[:, None], src[None, :] + 1) - np.maximum(lo[:, None], src[None, :])
        m = np.clip(ov, 0.0, None)
    else:
        # Bilinear at output-pixel centres (source pixel centres sit at i + 1/2).
        u = start + (np.arange(n_out) + 0.5) * scale - 0.5
        u = np.clip(u, 0.0, n_in - 1.0)
        i0 = np.floor(u).astype(np.int64)
        i1 = np.minimum(i0 + 1, n_in - 1)
        t = u - i0
        m = np.zeros((n_out, n_in))
        rows = np.arange(n_out)
        # One entry per row in each statement (i1 may equal i0 at the last pixel).
        m[rows, i0] += 1.0 - t
        m[rows, i1] += t
    sums = m.sum(axis=1, keepdims=True)
    m = np.divide(m, sums, out=np.zeros_like(m), where=sums > 0)
    return m.astype(np.float32)


def crop_and_resize(image: np.ndarray, crop_px: float, size: int) -> np.ndarray:
    """Crop a central square of side ``crop_px`` from ``image`` and resize it to ``size``.

    Parameters
    ----------
    image : numpy.ndarray
        float (C, H, W) without NaN.
    crop_px : float
        Side of the square in pixels; at most ``min(H, W)`` (see :func:`crop_side`).
    size : int
        Output side S.

    Returns
    -------
    numpy.ndarray
        float32 (C, S, S).
    """
    _, h, w = image.shape
    side = min(float(crop_px), h, w)
    y0 = h / 2.0 - side / 2.0
    x0 = w / 2.0 - side / 2.0
    # Restrict the source to the rows/columns the window touches.
    r0, r1 = max(0, int(np.floor(y0)) - 1), min(h, int(np.ceil(y0 + side)) + 1)
    c0, c1 = max(0, int(np.floor(x0)) - 1), min(w, int(np.ceil(x0 + side)) + 1)
    sub = np.ascontiguousarray(image[:, r0:r1, c0:c1], dtype=np.float32)
    ry = resize_matrix(r1 - r0, y0 - r0, side, size)
    same = (c1 - c0, x0 - c0) == (r1 - r0, y0 - r0)  # a square stamp: the same window
    rx = ry if same else resize_matrix(c1 - c0, x0 - c0, side, size)
    return np.matmul(np.matmul(ry, sub), rx.T)
