"""The cINN's observables: catalogue columns and sizes measured on the image.

Besides the representation, the cINN can be conditioned on quantities that are measured the
same way on simulated and observed images (``cinn.observables``). Two kinds exist:

* **catalogue columns** (``redshift``, ``i_mag``), read as they are;
* **Petrosian sizes** derived from what ``prepare`` measures on the r band of every stamp,
  observed or simulated (``r50_px``, ``r90_px`` in HSC pixels) and the redshift:
  ``log_r50_kpc`` and ``log_r90_kpc`` (log10 proper kpc in TNG's cosmology,
  :mod:`ergo_ray.cosmology`, the one the simulations' sizes are in) and ``concentration``
  (R90 / R50). The 4 × R90 crop removes the galaxy's size from the stamp, so the
  representation cannot carry it; the size at fixed mass is one of the channels that tie an
  image to its ex-situ fraction (it is one of the oracle's leading features, mock-universe.md).

:func:`observable_values` turns any column getter (a Parquet table, an evaluation set, a
mapping passed to :meth:`ergo_ray.infer.bundle.ModelBundle.condition`) into the observable
columns, deriving the sizes where the getter has the Petrosian radii.
"""

from __future__ import annotations

from collections.abc import Callable, Iterable, Mapping, Sequence
from typing import Any

import numpy as np

from ergo_ray.cosmology import kpc_per_arcsec
from ergo_ray.types import PIXEL_SCALE_ARCSEC

__all__ = ["DERIVED", "observable_values", "source_columns"]

#: Derived observables → the columns they are computed from.
DERIVED: dict[str, tuple[str, ...]] = {
    "log_r50_kpc": ("r50_px", "redshift"),
    "log_r90_kpc": ("r90_px", "redshift"),
    "concentration": ("r50_px", "r90_px"),
}


def source_columns(names: Iterable[str]) -> tuple[str, ...]:
    """Return the input columns needed to compute the observables ``names``, in order.

    Parameters
    ----------
    names : iterable of str
        Observable names (``cinn.observables``).

    Returns
    -------
    tuple of str
        Catalogue columns, each once.
    """
    out: list[str] = []
    for n in names:
        for c in DERIVED.get(n, (n,)):
            if c not in out:
                out.append(c)
    return tuple(out)


def _kpc_per_px(z: np.ndarray) -> np.ndarray:
    out = np.full(z.shape, np.nan)
    ok = np.isfinite(z) & (z > 0)
    if ok.any():
        out[ok] = kpc_per_arcsec(z[ok]) * PIXEL_SCALE_ARCSEC
    return out


def _log_pos(x: np.ndarray) -> np.ndarray:
    with np.errstate(divide="ignore", invalid="ignore"):
        return np.where(
            np.isfinite(x) & (x > 0), np.log10(np.where(x > 0, x, 1.0)), np.nan
        )


def observable_values(
    names: Sequence[str],
    get: Callable[[str], Any] | Mapping[str, Any],
    n: int | None = None,
) -> dict[str, np.ndarray]:
    """Return each observable as a float64 (N,) column.

    Parameters
    ----------
    names : sequence of str
        Observable names (``cinn.observables``).
    get : callable or mapping
        Column name → (N,) values; a callable may return None (or raise ``KeyError``) for a
        column it lacks. A derived observable given directly (e.g. ``log_r90_kpc`` in the
        mapping) is used where it is finite, and derived from its sources elsewhere.
    n : int, optional
        Row count, for columns that are missing altogether (then all NaN).

    Returns
    -------
    dict of str to numpy.ndarray
        One entry per name; NaN where an input is missing, non-finite or not positive.

    Raises
    ------
    ValueError
        When no column is available to tell the row count and ``n`` is not given.
    """

    def fetch(c: str) -> np.ndarray | None:
        try:
            v = get[c] if isinstance(get, Mapping) else get(c)
        except KeyError:
            return None
        return None if v is None else np.asarray(v, np.float64).reshape(-1)

    cache: dict[str, np.ndarray | None] = {}

    def col(c: str) -> np.ndarray | None:
        if c not in cache:
            cache[c] = fetch(c)
        return cache[c]

    size = n
    for c in (*names, *source_columns(names)):
        v = col(c)
        if v is not None:
            size = len(v)
            break
    if size is None:
        msg = f"cannot tell the number of rows: none of {list(names)} or their sources given"
        raise ValueError(msg)
    nan = np.full(size, np.nan)
    out: dict[str, np.ndarray] = {}
    for name in names:
        direct = col(name)
        if name not in DERIVED or (direct is not None and np.isfinite(direct).all()):
            out[name] = nan.copy() if direct is None else direct
            continue
        src = {c: (col(c) if col(c) is not None else nan) for c in DERIVED[name]}
        if name == "concentration":
            with np.errstate(divide="ignore", invalid="ignore"):
                ratio = src["r90_px"] / src["r50_px"]
            derived = np.where(
                np.isfinite(ratio) & (src["r50_px"] > 0) & (src["r90_px"] > 0),
                ratio,
                np.nan,
            )
        else:
            r = src["r50_px" if name == "log_r50_kpc" else "r90_px"]
            derived = _log_pos(r * _kpc_per_px(src["redshift"]))
        out[name] = (
            derived
            if direct is None
            else np.where(np.isfinite(direct), direct, derived)
        )
    return out
