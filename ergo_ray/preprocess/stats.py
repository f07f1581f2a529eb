"""Order statistics for the preprocessing hot path: median, percentile, sigma clipping.

They return what :func:`numpy.median` and :func:`numpy.percentile` (``method="linear"``)
return, without their per-call overhead (NaN checks, generic axis handling), which
dominates on the few-thousand-value samples that one stamp provides. Inputs must be finite.
"""

from __future__ import annotations

import numpy as np

__all__ = ["median", "percentile", "sigma_clipped_stats", "subsample"]


def _median_of_sorted(v: np.ndarray) -> float:
    """Median of a sorted float64 1-D array (the mean of the two middle values if even)."""
    k = v.size // 2
    if v.size % 2:
        return float(v[k])
    return (float(v[k - 1]) + float(v[k])) / 2.0


def median(values: np.ndarray, skip: int = 0) -> float:
    """Median of a finite sample, as :func:`numpy.median` computes it.

    Parameters
    ----------
    values : numpy.ndarray
        Finite values (any shape; flattened).
    skip : int
        Leave out this many of the smallest values: placeholders for missing data that sort
        below every valid value, so the sample need not be copied to drop them.

    Returns
    -------
    float
        The median of the remaining values; NaN when none remain.
    """
    v = np.asarray(values).ravel()
    n = v.size - skip
    if n <= 0:
        return float("nan")
    k = skip + n // 2
    part = np.partition(v, k)
    if n % 2:
        return float(part[k])
    # The other middle value is the largest one left of k: one selection, not two.
    a, b = part[skip:k].max(), part[k]
    return float((a + b) / 2)  # numpy scalars: np.mean's sum and division, in the dtype


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
    part = np.partition(v, i)
    # numpy scalars: the interpolation runs in the sample's dtype.
    a, b = part[i], (part[j:].min() if j > i else part[i])
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
    once: every kept set is then a contiguous run, its median a lookup and its mean and
    variance differences of prefix sums (float64, about the sample's median).

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
        (median, std); NaN for an empty sample.
    """
    v = np.sort(np.asarray(values, dtype=np.float64).ravel())
    if v.size == 0:
        return float("nan"), float("nan")
    ref = v[v.size // 2]
    d = v - ref
    s1 = np.concatenate(([0.0], np.cumsum(d)))
    s2 = np.concatenate(([0.0], np.cumsum(d * d)))

    def stats(lo: int, hi: int) -> tuple[float, float]:
        n = hi - lo
        mean = (s1[hi] - s1[lo]) / n
        var = max((s2[hi] - s2[lo]) / n - mean * mean, 0.0)
        return _median_of_sorted(v[lo:hi]), float(np.sqrt(var))

    lo, hi = 0, v.size
    for _ in range(maxiters):
        med, std = stats(lo, hi)
        a = max(lo, int(np.searchsorted(v, med - sigma * std, "left")))
        b = min(hi, int(np.searchsorted(v, med + sigma * std, "right")))
        if b - a == hi - lo or b - a < 3:
            break
        lo, hi = a, b
    return stats(lo, hi)


def subsample(a: np.ndarray, limit: int = 2048) -> np.ndarray:
    """Return a strided subsample of a flat array with at most about ``limit`` values.

    Parameters
    ----------
    a : numpy.ndarray
        1-D array.
    limit : int
        About the most values to keep.

    Returns
    -------
    numpy.ndarray
        Every ``max(1, a.size // limit)``-th value (a view).
    """
    step = max(1, a.size // limit)
    return a[::step]
