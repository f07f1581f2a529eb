"""Order statistics for the preprocessing hot path: median, percentile, sigma clipping.

They return what :func:`numpy.median` and :func:`numpy.percentile` (``method="linear"``)
return, without their per-call overhead (NaN checks, generic axis handling), which
dominates on the few-thousand-value samples that one stamp provides. Inputs must be finite.
"""

from __future__ import annotations

import numpy as np

__all__ = ["median", "percentile", "sigma_clipped_stats"]


def _median_of_sorted(v: np.ndarray) -> float:
    """Median of an already sorted 1-D array (the mean of the two middle values if even)."""
    k = v.size // 2
    if v.size % 2:
        return float(v[k])
    return float(np.mean(v[k - 1 : k + 1]))


def median(values: np.ndarray) -> float:
    """Median of a finite 1-D sample, as :func:`numpy.median` computes it.

    Parameters
    ----------
    values : numpy.ndarray
        Finite values (any shape; flattened).

    Returns
    -------
    float
        The median; NaN for an empty sample.
    """
    v = np.asarray(values).ravel()
    if v.size == 0:
        return float("nan")
    k = v.size // 2
    if v.size % 2:
        return float(np.partition(v, k)[k])
    part = np.partition(v, (k - 1, k))
    return float(np.mean(part[k - 1 : k + 1]))


def percentile(values: np.ndarray, q: float) -> float:
    """``q``-th percentile of a finite sample with linear interpolation (numpy's default).

    Parameters
    ----------
    values : numpy.ndarray
        Finite values (any shape; flattened).
    q : float
        Percentile in [0, 100].

    Returns
    -------
    float
        The percentile; NaN for an empty sample.
    """
    v = np.asarray(values).ravel()
    if v.size == 0:
        return float("nan")
    pos = (v.size - 1) * (q / 100.0)
    i = min(max(int(np.floor(pos)), 0), v.size - 1)
    j = min(i + 1, v.size - 1)
    part = np.partition(v, (i, j)) if j > i else np.partition(v, i)
    a, b = part[i], part[j]  # numpy scalars: the interpolation runs in the sample's dtype
    t = pos - i
    diff = b - a
    # numpy's lerp: from the nearer end, so that t = 1 returns b exactly.
    return float(b - diff * (1.0 - t)) if t >= 0.5 else float(a + diff * t)


def sigma_clipped_stats(
    values: np.ndarray, sigma: float = 3.0, maxiters: int = 5
) -> tuple[float, float]:
    """Sigma-clipped median and standard deviation of a 1-D sample.

    Each iteration keeps the values within ``sigma`` standard deviations of the median and
    stops when nothing is clipped or fewer than 3 values would remain. The sample is sorted
    once, so that every kept set is a contiguous run and every median a lookup.

    Parameters
    ----------
    values : numpy.ndarray
        Finite values.
    sigma : float
        Clipping threshold in standard deviations about the median.
    maxiters : int
        Maximum number of clipping iterations.

    Returns
    -------
    tuple of float
        (median, std) of the float32 sample; NaN for an empty sample.
    """
    v = np.sort(np.asarray(values, dtype=np.float32).ravel())
    if v.size == 0:
        return float("nan"), float("nan")
    for _ in range(maxiters):
        med = _median_of_sorted(v)
        keep = np.abs(v - med) <= sigma * float(v.std())
        n_keep = int(np.count_nonzero(keep))
        if n_keep == v.size or n_keep < 3:
            break
        first = int(np.argmax(keep))
        v = v[first : first + n_keep]
    return _median_of_sorted(v), float(v.std())
