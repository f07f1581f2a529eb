"""Science results for an observed set (method.md §8, the paper's Fig. 12).

* ex-situ fraction against stellar mass, every posterior sample in a 2-D histogram, with
  the median and 80 % range per mass bin beside the simulations';
* ex-situ fraction against physical size (Petrosian R90 in kpc from the redshift);
* the size–mass plane in hexagons coloured by the median MAP ex-situ fraction, each
  hexagon's size set by the median posterior standard deviation;
* the mean ex-situ difference, observed minus each simulation, at fixed stellar mass.
"""

from __future__ import annotations

from collections.abc import Mapping, Sequence
from typing import Any

import numpy as np
from matplotlib.collections import PolyCollection
from matplotlib.colors import LogNorm, Normalize
from matplotlib.figure import Figure

from ergo_ray.cosmology import kpc_per_arcsec
from ergo_ray.evaluate.plots import binned_percentiles, legend
from ergo_ray.types import PIXEL_SCALE_ARCSEC

__all__ = [
    "exsitu_difference_at_fixed_mass",
    "exsitu_vs_mass_figure",
    "exsitu_vs_size_figure",
    "mass_bin_ranges",
    "physical_size_kpc",
    "size_mass_hexbin_figure",
]

_COLORS = ("C1", "C2", "C3", "C4", "C5", "C6")


def physical_size_kpc(r90_px: np.ndarray, redshift: np.ndarray,
                      pixel_scale_arcsec: float = PIXEL_SCALE_ARCSEC) -> np.ndarray:
    """Petrosian R90 in proper kpc: pixels × 0.168″ × kpc per arcsec at the redshift.

    Observed galaxies are converted in TNG's cosmology (:mod:`ergo_ray.cosmology`), like the
    simulated ones they are plotted against: with one cosmology for both sets, a difference
    in kpc is a difference in the galaxies, not in the distance scale.

    Parameters
    ----------
    r90_px : numpy.ndarray
        (N,) radii in HSC pixels.
    redshift : numpy.ndarray
        (N,) redshifts.
    pixel_scale_arcsec : float
        Pixel scale.

    Returns
    -------
    numpy.ndarray
        (N,) sizes in kpc; NaN where the radius or redshift is missing or not positive.
    """
    r = np.asarray(r90_px, dtype=np.float64)
    z = np.asarray(redshift, dtype=np.float64)
    ok = np.isfinite(r) & np.isfinite(z) & (z > 0) & (r > 0)
    out = np.full(r.shape, np.nan)
    if ok.any():
        out[ok] = r[ok] * pixel_scale_arcsec * kpc_per_arcsec(z[ok])
    return out


def mass_bin_ranges(log_mstar: np.ndarray, values: np.ndarray, edges: Sequence[float],
                    min_count: int = 5) -> list[dict[str, Any]]:
    """Median and 80 % range of ex-situ values per stellar-mass bin.

    Parameters
    ----------
    log_mstar : numpy.ndarray
        (N,) stellar masses.
    values : numpy.ndarray
        (N,) values, or (N, S) posterior samples (every sample counts, with its galaxy's mass).
    edges : sequence of float
        Mass bin edges.
    min_count : int
        Bins with fewer galaxies give NaN.

    Returns
    -------
    list of dict
        Per bin: ``lo``, ``hi``, ``n`` (galaxies), ``p10``, ``median``, ``p90``, ``mean``.
    """
    m = np.asarray(log_mstar, dtype=np.float64)
    v = np.asarray(values, dtype=np.float64)
    v2 = v if v.ndim == 2 else v[:, None]
    e = np.asarray(edges, dtype=np.float64)
    idx = np.digitize(m, e) - 1
    rows = []
    for b in range(e.size - 1):
        sel = (idx == b) & np.isfinite(m)
        vals = v2[sel].ravel()
        vals = vals[np.isfinite(vals)]
        row: dict[str, Any] = {"lo": float(e[b]), "hi": float(e[b + 1]), "n": int(sel.sum())}
        if sel.sum() >= min_count and vals.size:
            p10, med, p90 = np.percentile(vals, [10, 50, 90])
            row.update(p10=float(p10), median=float(med), p90=float(p90), mean=float(vals.mean()))
        else:
            row.update(p10=float("nan"), median=float("nan"), p90=float("nan"), mean=float("nan"))
        rows.append(row)
    return rows


def exsitu_difference_at_fixed_mass(
    obs_mass: np.ndarray, obs_values: np.ndarray,
    sim_mass: np.ndarray, sim_values: np.ndarray,
    edges: Sequence[float], min_count: int = 5,
) -> dict[str, Any]:
    """Mean ex-situ fraction of the observed set minus a simulation's, at fixed mass.

    The difference of the means is taken per mass bin and averaged with the observed set's
    galaxy counts as weights (bins where either side has fewer than ``min_count`` galaxies
    are skipped), so a different mass distribution does not masquerade as a shift.

    Parameters
    ----------
    obs_mass, obs_values : numpy.ndarray
        Observed stellar masses and per-galaxy values (e.g. posterior means).
    sim_mass, sim_values : numpy.ndarray
        The simulation's masses and values (inferred, or the truth).
    edges : sequence of float
        Mass bin edges.
    min_count : int
        Minimum galaxies per side in a bin.

    Returns
    -------
    dict
        ``mean_difference`` (weighted), ``stderr`` (from the per-bin standard errors),
        ``n_bins`` used, and ``bins`` (``lo``, ``hi``, ``n_obs``, ``n_sim``, ``obs_mean``,
        ``sim_mean``, ``difference``).
    """
    e = np.asarray(edges, dtype=np.float64)
    om, ov = np.asarray(obs_mass, float), np.asarray(obs_values, float)
    sm, sv = np.asarray(sim_mass, float), np.asarray(sim_values, float)
    ok_o = np.isfinite(om) & np.isfinite(ov)
    ok_s = np.isfinite(sm) & np.isfinite(sv)
    io_, is_ = np.digitize(om, e) - 1, np.digitize(sm, e) - 1
    bins, w, d, var = [], [], [], []
    for b in range(e.size - 1):
        a = ov[ok_o & (io_ == b)]
        s = sv[ok_s & (is_ == b)]
        row: dict[str, Any] = {"lo": float(e[b]), "hi": float(e[b + 1]),
                               "n_obs": int(a.size), "n_sim": int(s.size)}
        if a.size >= min_count and s.size >= min_count:
            diff = float(a.mean() - s.mean())
            row.update(obs_mean=float(a.mean()), sim_mean=float(s.mean()), difference=diff)
            w.append(a.size)
            d.append(diff)
            var.append(a.var(ddof=1) / a.size + s.var(ddof=1) / s.size)
        else:
            row.update(obs_mean=float("nan"), sim_mean=float("nan"), difference=float("nan"))
        bins.append(row)
    if not w:
        return {"mean_difference": float("nan"), "stderr": float("nan"), "n_bins": 0,
                "bins": bins}
    wa = np.asarray(w, float) / np.sum(w)
    return {
        "mean_difference": float(np.sum(wa * np.asarray(d))),
        "stderr": float(np.sqrt(np.sum(wa**2 * np.asarray(var)))),
        "n_bins": len(w),
        "bins": bins,
    }


def _draw_ranges(ax: Any, rows: Sequence[Mapping[str, Any]], color: str, label: str,
                 offset: float = 0.0, marker: str = "o") -> None:
    c = np.array([0.5 * (r["lo"] + r["hi"]) for r in rows]) + offset
    med = np.array([r["median"] for r in rows], float)
    lo = np.array([r["p10"] for r in rows], float)
    hi = np.array([r["p90"] for r in rows], float)
    ok = np.isfinite(med)
    if not ok.any():
        return
    ax.errorbar(c[ok], med[ok], yerr=[med[ok] - lo[ok], hi[ok] - med[ok]], fmt=marker + "-",
                color=color, ms=4, capsize=3, lw=1.4, label=label)


def exsitu_vs_mass_figure(
    observed: str,
    obs_mass: np.ndarray,
    obs_samples: np.ndarray,
    edges: Sequence[float],
    sims: Mapping[str, list[dict[str, Any]]] | None = None,
) -> Figure:
    """Ex-situ fraction vs stellar mass: all posterior samples, medians and 80 % ranges.

    Parameters
    ----------
    observed : str
        Observed set name.
    obs_mass : numpy.ndarray
        (N,) stellar masses.
    obs_samples : numpy.ndarray
        (N, S) ex-situ posterior samples.
    edges : sequence of float
        Mass bin edges.
    sims : mapping, optional
        Label → rows of :func:`mass_bin_ranges` for each simulation (drawn beside).

    Returns
    -------
    matplotlib.figure.Figure
        The figure.
    """
    fig = Figure(figsize=(6.4, 4.8), layout="constrained")
    ax = fig.add_subplot()
    m = np.asarray(obs_mass, float)
    s = np.asarray(obs_samples, float)
    ok = np.isfinite(m)
    x = np.repeat(m[ok], s.shape[1])
    y = s[ok].ravel()
    fin = np.isfinite(y)
    e = np.asarray(edges, float)
    lo = min(float(e[0]), float(np.nanmin(x))) if x.size else float(e[0])
    hi = max(float(e[-1]), float(np.nanmax(x))) if x.size else float(e[-1])
    if fin.any():
        h, xe, ye = np.histogram2d(x[fin], y[fin], bins=(40, 40), range=((lo, hi), (0.0, 1.0)))
        h = np.where(h > 0, h, np.nan)
        mesh = ax.pcolormesh(xe, ye, h.T, cmap="Greys", norm=LogNorm(
            vmin=float(np.nanmin(h)), vmax=max(float(np.nanmax(h)), float(np.nanmin(h)) + 1)),
            rasterized=True)
        fig.colorbar(mesh, ax=ax, label=f"{observed} posterior samples")
    _draw_ranges(ax, mass_bin_ranges(m, s, e), "C0", f"{observed} (n={int(ok.sum())})")
    for i, (label, rows) in enumerate((sims or {}).items()):
        _draw_ranges(ax, rows, _COLORS[i % len(_COLORS)], label,
                     offset=0.04 * (i + 1), marker="s")
    ax.set_xlim(lo, hi)
    ax.set_ylim(0, 1)
    ax.set_xlabel(r"$\log_{10}$ M$_*$ [M$_\odot$]")
    ax.set_ylabel("ex-situ stellar fraction")
    ax.set_title("ex-situ fraction vs stellar mass (median, 10–90 %)")
    legend(ax, fontsize=7, loc="upper left")
    return fig


def exsitu_vs_size_figure(
    observed: str, size_kpc: np.ndarray, samples: np.ndarray, log_mstar: np.ndarray,
    mass_edges: Sequence[float] = (10.0, 10.5, 11.0, 11.5),
) -> Figure:
    """Ex-situ fraction vs physical size: all samples, and medians in bins of size per mass bin.

    Parameters
    ----------
    observed : str
        Set name.
    size_kpc : numpy.ndarray
        (N,) physical R90 in kpc.
    samples : numpy.ndarray
        (N, S) ex-situ posterior samples.
    log_mstar : numpy.ndarray
        (N,) stellar masses (for the fixed-mass medians).
    mass_edges : sequence of float
        Mass bins of the median curves.

    Returns
    -------
    matplotlib.figure.Figure
        The figure (size on a log axis).
    """
    fig = Figure(figsize=(6.4, 4.8), layout="constrained")
    ax = fig.add_subplot()
    r = np.asarray(size_kpc, float)
    s = np.asarray(samples, float)
    m = np.asarray(log_mstar, float)
    ok = np.isfinite(r) & (r > 0)
    if ok.sum() < 2:
        ax.text(0.5, 0.5, "no sizes", ha="center", transform=ax.transAxes)
        return fig
    lr = np.log10(r[ok])
    x = np.repeat(lr, s.shape[1])
    y = s[ok].ravel()
    fin = np.isfinite(y)
    rlo, rhi = np.percentile(lr, [0.5, 99.5])
    rhi = max(rhi, rlo + 1e-3)
    h, xe, ye = np.histogram2d(x[fin], y[fin], bins=(40, 40), range=((rlo, rhi), (0.0, 1.0)))
    h = np.where(h > 0, h, np.nan)
    if np.isfinite(h).any():
        mesh = ax.pcolormesh(10**xe, ye, h.T, cmap="Greys", norm=LogNorm(
            vmin=float(np.nanmin(h)), vmax=max(float(np.nanmax(h)), float(np.nanmin(h)) + 1)),
            rasterized=True)
        fig.colorbar(mesh, ax=ax, label=f"{observed} posterior samples")
    edges = np.linspace(rlo, rhi, 9)
    gal_med = np.nanmedian(np.where(np.isfinite(s), s, np.nan), axis=1)
    c, v, _ = binned_percentiles(lr, gal_med[ok], edges, (10, 50, 90))
    ax.plot(10**c, v[:, 1], "-", color="C0", lw=2, label="all masses")
    me = np.asarray(mass_edges, float)
    for i in range(me.size - 1):
        sel = (m[ok] >= me[i]) & (m[ok] < me[i + 1])
        if sel.sum() < 5:
            continue
        c, v, _ = binned_percentiles(lr[sel], gal_med[ok][sel], edges, (50,), min_count=3)
        ax.plot(10**c, v[:, 0], "--", color=_COLORS[i % len(_COLORS)], lw=1.4,
                label=f"{me[i]:g} ≤ log M* < {me[i + 1]:g}")
    ax.set_xscale("log")
    ax.set_ylim(0, 1)
    ax.set_xlabel("Petrosian R90 [kpc]")
    ax.set_ylabel("ex-situ stellar fraction")
    ax.set_title("ex-situ fraction vs physical size (median per galaxy)")
    legend(ax, fontsize=7, loc="upper left")
    return fig


def _hexagon(sx: float, sy: float) -> np.ndarray:
    """Return the hexagon that ``hexbin`` draws for cell sizes (sx, sy), centred on 0."""
    unit = np.array([[0.5, -0.5], [0.5, 0.5], [0.0, 1.0], [-0.5, 0.5], [-0.5, -0.5], [0.0, -1.0]])
    return unit * np.array([sx, sy / 3.0])


def size_mass_hexbin_figure(
    log_mstar: np.ndarray, size_kpc: np.ndarray, map_exsitu: np.ndarray, std_exsitu: np.ndarray,
    gridsize: int = 20, min_count: int = 3,
) -> Figure:
    """Size–mass plane in hexagons: colour = median MAP ex-situ, size = median posterior std.

    Parameters
    ----------
    log_mstar : numpy.ndarray
        (N,) stellar masses.
    size_kpc : numpy.ndarray
        (N,) physical R90 in kpc.
    map_exsitu : numpy.ndarray
        (N,) MAP ex-situ fractions.
    std_exsitu : numpy.ndarray
        (N,) posterior standard deviations.
    gridsize : int
        Hexagons across the mass axis.
    min_count : int
        Hexagons with fewer galaxies are not drawn.

    Returns
    -------
    matplotlib.figure.Figure
        The figure; the largest hexagons mark the largest median std.
    """
    fig = Figure(figsize=(6.8, 4.8), layout="constrained")
    ax = fig.add_subplot()
    m = np.asarray(log_mstar, float)
    r = np.asarray(size_kpc, float)
    f = np.asarray(map_exsitu, float)
    sd = np.asarray(std_exsitu, float)
    ok = np.isfinite(m) & np.isfinite(r) & (r > 0) & np.isfinite(f) & np.isfinite(sd)
    if ok.sum() < min_count:
        ax.text(0.5, 0.5, "not enough galaxies with mass and size", ha="center",
                transform=ax.transAxes)
        return fig
    x, y = m[ok], np.log10(r[ok])
    ext = (float(x.min()), float(x.max()) + 1e-6, float(y.min()), float(y.max()) + 1e-6)
    kw = {"gridsize": gridsize, "extent": ext, "mincnt": min_count}
    hb_f = ax.hexbin(x, y, C=f[ok], reduce_C_function=np.median, **kw)
    hb_s = ax.hexbin(x, y, C=sd[ok], reduce_C_function=np.median, **kw)
    offsets = hb_f.get_offsets()
    colours = np.asarray(hb_f.get_array())
    sizes = np.asarray(hb_s.get_array())
    hb_f.remove()
    hb_s.remove()
    if len(offsets) == 0:
        ax.text(0.5, 0.5, f"no hexagon with ≥ {min_count} galaxies", ha="center",
                transform=ax.transAxes)
        return fig
    sx = (ext[1] - ext[0]) / gridsize
    sy = (ext[3] - ext[2]) / max(int(gridsize / np.sqrt(3)), 1)
    smax = float(np.max(sizes)) or 1.0
    scale = np.clip(sizes / smax, 0.25, 1.0)
    hexagon = _hexagon(sx, sy)
    verts = [o + hexagon * s for o, s in zip(offsets, scale, strict=True)]
    pc = PolyCollection(verts, array=colours, cmap="plasma",
                        norm=Normalize(vmin=float(colours.min()), vmax=float(colours.max()) + 1e-9),
                        edgecolors="none")
    ax.add_collection(pc)
    fig.colorbar(pc, ax=ax, label="median MAP ex-situ fraction")
    ax.set_xlim(ext[0] - sx, ext[1] + sx)
    ax.set_ylim(ext[2] - sy, ext[3] + sy)
    ax.set_xlabel(r"$\log_{10}$ M$_*$ [M$_\odot$]")
    ax.set_ylabel(r"$\log_{10}$ R90 [kpc]")
    ax.set_title(f"size–mass plane; hexagon size ∝ median posterior std "
                 f"({float(sizes.min()):.3f}–{smax:.3f})", fontsize=9)
    return fig
