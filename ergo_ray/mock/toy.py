"""A toy generator with a known answer: prepared shards of simple synthetic galaxies.

:func:`write_toy_prepared_shards` writes small prepared-format shards (what ``prepare``
writes) of galaxies whose size, brightness, colour and halo follow ``log_mstar``,
``true_exsitu_frac`` and ``redshift``, so that a representation can be checked to learn
them. Tests, smoke runs and the training benchmarks use it; it renders in milliseconds,
where the mock universe (:mod:`ergo_ray.mock.render`) takes GalSim.
"""

from __future__ import annotations

from collections.abc import Sequence
from typing import TYPE_CHECKING

import numpy as np
import pyarrow as pa
import pyarrow.parquet as pq

from ergo_ray.io import storage as st
from ergo_ray.io.schemas import META_IMAGE_SHAPE, META_KIND, META_SCHEMA, SCHEMA_VERSION

if TYPE_CHECKING:
    from ergo_ray.config.schema import StorageConfig

__all__ = ["write_toy_prepared_shards"]


def write_toy_prepared_shards(
    url: str,
    n_per_domain: int,
    *,
    size: int = 32,
    domains: Sequence[str] = ("tng100", "tng50", "hsc"),
    seed: int = 0,
    rows_per_file: int = 256,
    storage: StorageConfig | None = None,
) -> list[str]:
    """Write prepared-format shards of simple synthetic galaxies with a known relation.

    Each galaxy is an elliptical exponential profile whose half-light radius and brightness
    grow with ``log_mstar``, whose faint extended halo and red colour grow with
    ``true_exsitu_frac``, and which dims and reddens with ``redshift``; Gaussian noise and a
    log stretch to uint8 follow, so that a representation can learn these quantities. Rows
    are split 80/10/10 by ``root_id``. The ``hsc`` domain carries no ``true_*`` columns,
    as an observed catalogue would.

    Parameters
    ----------
    url : str
        Output folder; each domain becomes one prepared folder
        ``URL/{domain}/shards/part-{k:05d}.parquet``, as ``prepare`` writes one per input.
    n_per_domain : int
        Galaxies per domain.
    size : int
        Stamp side S in pixels.
    domains : sequence of str
        Domains to write.
    seed : int
        Random seed.
    rows_per_file : int
        Rows per shard file.
    storage : StorageConfig, optional
        Storage settings.

    Returns
    -------
    list of str
        The prepared folder URLs, one per domain (pass them as ``--data``).
    """
    written: list[str] = []
    for d_idx, domain in enumerate(domains):
        table = _toy_table(domain, np.random.default_rng([seed, d_idx]), n_per_domain, size,
                           seed)
        for k, start in enumerate(range(0, n_per_domain, rows_per_file)):
            file_url = st.join(url, domain, "shards", f"part-{k:05d}.parquet")
            fs, path = st.arrow_fs(file_url, storage)
            st.makedirs(st.join(url, domain, "shards"))
            pq.write_table(table.slice(start, rows_per_file), path, filesystem=fs)
        written.append(st.join(url, domain))
    return written


def _toy_table(domain: str, rng: np.random.Generator, n: int, size: int, seed: int) -> pa.Table:
    """Draw the ``n`` galaxies of one domain: the prepared table, catalogue and images."""
    log_mstar = rng.uniform(9.0, 12.0, n)
    exsitu = 1.0 / (1.0 + np.exp(-(2.0 * (log_mstar - 10.8) + rng.normal(0, 0.6, n))))
    redshift = rng.uniform(0.05, 0.6, n)
    images = _toy_images(rng, log_mstar, exsitu, redshift, size,
                         noise=0.02 + 0.01 * (domain == "hsc"))
    roots = [f"{domain}-{seed}-{i:07d}" for i in range(n)]
    u = rng.random(n)
    split = np.where(u < 0.8, "train", np.where(u < 0.9, "val", "test"))
    cols: dict[str, pa.Array] = {
        "object_id": pa.array([f"{r}-p0" for r in roots]),
        "root_id": pa.array(roots),
        "domain": pa.array([domain] * n),
        "projection": pa.array(np.zeros(n, np.int32)),
        "redshift": pa.array(redshift),
        "log_mstar": pa.array(log_mstar),
        # apparent magnitude: brighter with mass, fainter with distance (0.1 mag scatter)
        "i_mag": pa.array(16.8 - 2.5 * (log_mstar - 10.5) + 5.0 * np.log10(redshift / 0.1)
                          + rng.normal(0, 0.1, n)),
    }
    if domain != "hsc":
        cols["true_exsitu_frac"] = pa.array(exsitu)
        cols["true_lmm_lookback_gyr"] = pa.array(rng.uniform(0.5, 10.0, n))
        cols["true_lmm_log_mass"] = pa.array(log_mstar - rng.uniform(0.3, 1.5, n))
    r50 = 0.06 * size * 10 ** (0.25 * (log_mstar - 9.0))
    cols |= {
        "r50_px": pa.array(r50), "r90_px": pa.array(2.3 * r50),
        "petro_r_px": pa.array(2.0 * r50), "crop_px": pa.array(np.full(n, float(size))),
        "split": pa.array(split.tolist()),
        "image": pa.FixedSizeListArray.from_arrays(
            pa.array(images.reshape(-1)), 3 * size * size
        ),
    }
    return pa.table(cols).replace_schema_metadata({
        META_KIND: b"prepared-shard", META_IMAGE_SHAPE: f"3,{size},{size}".encode(),
        META_SCHEMA: SCHEMA_VERSION.encode(), b"ergo_ray.version": b"toy",
    })

def _toy_images(rng: np.random.Generator, log_mstar: np.ndarray, exsitu: np.ndarray,
                redshift: np.ndarray, size: int, noise: float) -> np.ndarray:
    n = len(log_mstar)
    yy, xx = np.mgrid[0:size, 0:size].astype(np.float32) - (size - 1) / 2.0
    theta = rng.uniform(0, np.pi, n)[:, None, None]
    q = rng.uniform(0.5, 1.0, n)[:, None, None]
    xr = xx * np.cos(theta) + yy * np.sin(theta)
    yr = -xx * np.sin(theta) + yy * np.cos(theta)
    radius = np.sqrt(xr**2 + (yr / q) ** 2)
    r_e = (0.05 * size * 10 ** (0.25 * (log_mstar - 9.0)))[:, None, None]
    amp = (10 ** (0.4 * (log_mstar - 11.0)) / (1.0 + 2.0 * redshift))[:, None, None]
    disk = amp * np.exp(-1.68 * radius / r_e)
    halo = amp * 0.15 * exsitu[:, None, None] * np.exp(-radius / (3.0 * r_e))
    # Channel colours (i, r, g): ex-situ stars and redshift make galaxies redder.
    red = (0.3 * exsitu + 0.5 * redshift)[:, None]
    colour = np.stack([1.0 + red[:, 0], np.ones(n), 1.0 - 0.6 * red[:, 0]], axis=1)
    img = (disk + halo)[:, None] * colour[:, :, None, None].astype(np.float32)
    img = img + rng.normal(0.0, noise, img.shape)
    stretched = np.log1p(np.clip(img, 0, None) / noise) / np.log1p(3.0 / noise)
    return np.clip(np.round(stretched * 255.0), 0, 255).astype(np.uint8)
