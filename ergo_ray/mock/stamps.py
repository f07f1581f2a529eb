"""A PNG grid of example mock stamps: one row per domain, g, r, i colour composites."""

from __future__ import annotations

import io
from collections.abc import Sequence
from typing import Any

import numpy as np

from ergo_ray.mock.render import mock_object
from ergo_ray.types import DOMAINS

__all__ = ["composite", "stamp_grid", "write_stamp_png"]


def composite(image: np.ndarray, stretch: float = 1.5, q: float = 10.0) -> np.ndarray:
    """Lupton et al. (2004) colour composite of a g, r, i cutout (i → red, g → blue).

    Parameters
    ----------
    image : numpy.ndarray
        (3, H, W) g, r, i in ZP-27 flux units.
    stretch : float
        Linear stretch of the asinh mapping (flux units).
    q : float
        Asinh softening parameter.

    Returns
    -------
    numpy.ndarray
        uint8 (H, W, 3) RGB.
    """
    from astropy.visualization import make_lupton_rgb

    img = np.nan_to_num(
        np.asarray(image, dtype=np.float64), nan=0.0, posinf=0.0, neginf=0.0
    )
    # weights bring the three bands to similar noise/colour balance for display
    g, r, i = img[0] * 1.9, img[1] * 1.25, img[2] * 1.0
    rgb = make_lupton_rgb(i, r, g, minimum=0.0, stretch=stretch, Q=q)
    return np.flipud(rgb)  # row 0 of a FITS-like array is the bottom of the picture


def stamp_grid(
    n: int,
    stamp_px: int,
    seed: int = 0,
    mass_mode: str = "balanced",
    domains: Sequence[str] = DOMAINS,
    projection: int = 0,
) -> tuple[np.ndarray, list[list[dict[str, Any]]]]:
    """Render ``n`` galaxies of each domain and return their composites.

    Parameters
    ----------
    n : int
        Galaxies per domain (columns).
    stamp_px : int
        Stamp side in pixels.
    seed : int
        Survey seed; galaxies are indices ``0 .. n-1``.
    mass_mode : {"balanced", "population"}
        Stellar-mass sampling.
    domains : sequence of str
        Rows, in order.
    projection : int
        Projection drawn.

    Returns
    -------
    grid : numpy.ndarray
        uint8 (rows, n, H, W, 3).
    rows : list of list of dict
        Catalogue rows of the stamps, per domain.
    """
    tiles = np.zeros((len(domains), n, stamp_px, stamp_px, 3), dtype=np.uint8)
    rows: list[list[dict[str, Any]]] = []
    for d, dom in enumerate(domains):
        rows.append([])
        for j in range(n):
            row, cut = mock_object(dom, seed, j, projection, stamp_px, mass_mode)
            tiles[d, j] = composite(cut.image)
            rows[-1].append(row)
    return tiles, rows


def write_stamp_png(
    url: str,
    n: int = 6,
    stamp_px: int = 64,
    seed: int = 0,
    mass_mode: str = "balanced",
    domains: Sequence[str] = DOMAINS,
    storage: Any = None,
) -> None:
    """Write the stamp grid as a labelled PNG.

    Parameters
    ----------
    url : str
        Output PNG URL (local path, ``file://`` or ``s3://``).
    n : int
        Galaxies per domain.
    stamp_px : int
        Stamp side in pixels.
    seed : int
        Survey seed.
    mass_mode : {"balanced", "population"}
        Stellar-mass sampling.
    domains : sequence of str
        One row per domain.
    storage : StorageConfig, optional
        Storage options for remote URLs.
    """
    import matplotlib

    matplotlib.use("Agg", force=False)
    from matplotlib.figure import Figure

    from ergo_ray.io import storage as st

    tiles, rows = stamp_grid(n, stamp_px, seed, mass_mode, domains)
    size = 1.45
    fig = Figure(figsize=(size * n + 0.9, size * len(domains) + 0.3), dpi=110)
    for d, dom in enumerate(domains):
        for j in range(n):
            ax = fig.add_axes(
                (
                    0.9 / (size * n + 0.9) + j * size / (size * n + 0.9),
                    1 - (d + 1) * size / (size * len(domains) + 0.3),
                    size / (size * n + 0.9) * 0.97,
                    size / (size * len(domains) + 0.3) * 0.97,
                )
            )
            ax.imshow(tiles[d, j], interpolation="nearest")
            ax.set_xticks([])
            ax.set_yticks([])
            r = rows[d][j]
            ax.text(
                0.03,
                0.97,
                f"logM {r['log_mstar']:.1f} z {r['redshift']:.2f}\n"
                f"fex {r['true_exsitu_frac']:.2f}",
                transform=ax.transAxes,
                va="top",
                ha="left",
                fontsize=5.5,
                color="w",
            )
            if j == 0:
                ax.set_ylabel(dom, fontsize=9, color="w")
    buf = io.BytesIO()
    fig.savefig(buf, format="png", facecolor="black")
    st.write_bytes(url, buf.getvalue(), storage)
