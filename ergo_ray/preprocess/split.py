"""Train/validation/test splits drawn on ``root_id`` (method.md §1.5).

Each ``root_id`` is hashed together with the seed (BLAKE2b, 64 bits) to a number u in
[0, 1); the split is ``train`` for u < f_train, ``val`` for u < f_train + f_val, else
``test``. So all projections and snapshots of one lineage share a split, and a galaxy's split
never changes when others are added or removed — no global shuffle is involved. The
fractions are met in expectation (binomial scatter), not exactly.
"""

from __future__ import annotations

import hashlib
from collections.abc import Iterable

import numpy as np

from ergo_ray.errors import ConfigError
from ergo_ray.io.schemas import SPLITS

__all__ = ["assign_split", "split_uniform"]

_SCALE = float(2**64)


def split_uniform(root_ids: Iterable[str], seed: int) -> np.ndarray:
    """Return the stable uniform number in [0, 1) of each ``(seed, root_id)``.

    Parameters
    ----------
    root_ids : iterable of str
        Galaxy identifiers.
    seed : int
        Split seed.

    Returns
    -------
    numpy.ndarray
        float64 array, one value per id.
    """
    key = str(int(seed)).encode() + b"\x00"
    out = [
        int.from_bytes(hashlib.blake2b(str(r).encode(), digest_size=8, key=key).digest(), "little")
        for r in root_ids
    ]
    return np.asarray(out, dtype=np.float64) / _SCALE


def assign_split(
    root_ids: Iterable[str],
    fractions: tuple[float, float, float] = (0.8, 0.1, 0.1),
    seed: int = 42,
) -> np.ndarray:
    """Assign ``train``/``val``/``test`` to each object from its ``root_id``.

    Parameters
    ----------
    root_ids : iterable of str
        One ``root_id`` per object (repeats get the same split).
    fractions : tuple of float
        (train, val, test), non-negative, summing to 1.
    seed : int
        Split seed (``cfg.split.seed``).

    Returns
    -------
    numpy.ndarray
        Array of str (``object`` dtype), one split name per object.

    Raises
    ------
    ConfigError
        If the fractions are negative or do not sum to 1.
    """
    f = np.asarray(fractions, dtype=np.float64)
    if f.shape != (3,) or (f < 0).any() or abs(f.sum() - 1.0) > 1e-6:
        msg = f"split fractions must be three non-negative numbers summing to 1, got {fractions}"
        raise ConfigError(msg)
    ids = list(root_ids)
    if not ids:
        return np.array([], dtype=object)
    u = split_uniform(ids, seed)
    edges = np.cumsum(f)[:2]
    idx = np.searchsorted(edges, u, side="right")
    return np.asarray(SPLITS, dtype=object)[idx]
