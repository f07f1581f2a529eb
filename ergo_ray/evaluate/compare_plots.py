"""The representation-space figures of ``compare``: OOD score histograms and UMAP/KDE.

Like :mod:`ergo_ray.evaluate.plots`, every function returns a
:class:`matplotlib.figure.Figure` (turn it into PNG bytes with
:func:`~ergo_ray.evaluate.plots.figure_png`) and never touches the global pyplot state.
"""

from __future__ import annotations

from collections.abc import Mapping, Sequence

import numpy as np
from matplotlib.figure import Figure
from matplotlib.ticker import FixedLocator, FormatStrFormatter, NullFormatter

from ergo_ray.evaluate.plots import COLORS, legend

__all__ = ["ood_histogram_figure", "umap_kde_figure"]


def ood_histogram_figure(
    scores: Mapping[tuple[str, str], np.ndarray], names: Sequence[str],
    threshold: float = 1.0,
) -> Figure:
    """Distributions of scaled OOD scores (Fig. 8 style), one panel per query set.

    Parameters
    ----------
    scores : mapping
        ``(query, reference)`` → scaled scores.
    names : sequence of str
        Set names (panel order; each panel shows the query against every reference).
    threshold : float
        The OOD threshold (vertical line).

    Returns
    -------
    matplotlib.figure.Figure
        A grid of panels.
    """
    n = len(names)
    ncol = min(n, 3)
    nrow = int(np.ceil(n / ncol))
    fig = Figure(figsize=(4.3 * ncol, 3.4 * nrow), layout="constrained")
    axes = fig.subplots(nrow, ncol, squeeze=False).ravel()
    allv = np.concatenate([np.asarray(v) for v in scores.values()])
    allv = allv[np.isfinite(allv) & (allv > 0)]
    lo = float(min(np.percentile(allv, 0.5), 0.8)) if allv.size else 0.5
    hi = float(max(np.percentile(allv, 99.5), 1.5)) if allv.size else 3.0
    edges = np.geomspace(lo, hi, 50)
    for ax, a in zip(axes, names, strict=False):
        for i, b in enumerate(names):
            s = scores.get((a, b))
            if s is None:
                continue
            s = np.asarray(s)
            s = s[np.isfinite(s)]
            frac = float(np.mean(s > threshold)) if s.size else float("nan")
            ax.hist(np.clip(s, edges[0], edges[-1]), bins=edges, histtype="step",
                    weights=np.full(s.size, 1.0 / max(s.size, 1)),
                    color=COLORS[i % 10], lw=2 if a == b else 1.2,
                    label=f"{a}-{b}: {frac:.1%} > {threshold:g}")
        ax.axvline(threshold, color="k", ls=":", lw=1)
        ax.set_xscale("log")
        ticks = [t for t in (0.2, 0.5, 1, 2, 5, 10, 20, 50, 100) if edges[0] <= t <= edges[-1]]
        ax.xaxis.set_major_locator(FixedLocator(ticks))
        ax.xaxis.set_major_formatter(FormatStrFormatter("%g"))
        ax.xaxis.set_minor_formatter(NullFormatter())
        ax.set_xlabel("scaled OOD score (log)")
        ax.set_ylabel("fraction per bin")
        ax.set_title(f"query: {a}")
        legend(ax, fontsize=7)
    for ax in axes[n:]:
        ax.set_visible(False)
    return fig


def _kde_levels(density: np.ndarray, masses: Sequence[float]) -> list[float]:
    """Density thresholds whose super-level sets enclose the given probability masses."""
    flat = np.sort(density.ravel())[::-1]
    cum = np.cumsum(flat)
    cum /= cum[-1] if cum[-1] > 0 else 1.0
    levels = [float(flat[min(np.searchsorted(cum, m), flat.size - 1)]) for m in masses]
    return sorted(set(levels))


def umap_kde_figure(
    embedding: Mapping[str, np.ndarray], observed: str | None,
    masses: Sequence[float] = (0.5, 0.8, 0.95), grid: int = 100,
) -> Figure:
    """Joint UMAP with KDE isodensity contours of each set against the observed set (Fig. 7).

    Parameters
    ----------
    embedding : mapping
        Set name → (N_i, 2) UMAP coordinates (one joint embedding).
    observed : str or None
        The observed set drawn in every panel; without one, all sets share one panel.
    masses : sequence of float
        Probability masses enclosed by the contours.
    grid : int
        KDE grid size per axis.

    Returns
    -------
    matplotlib.figure.Figure
        One panel per other set.
    """
    from scipy.stats import gaussian_kde

    allp = np.concatenate([np.asarray(v) for v in embedding.values()])
    pad = 0.05 * (allp.max(axis=0) - allp.min(axis=0) + 1e-9)
    lo, hi = allp.min(axis=0) - pad, allp.max(axis=0) + pad
    gx, gy = np.meshgrid(np.linspace(lo[0], hi[0], grid), np.linspace(lo[1], hi[1], grid))
    pts = np.vstack([gx.ravel(), gy.ravel()])

    def density(xy: np.ndarray) -> np.ndarray | None:
        if xy.shape[0] < 5:
            return None
        try:
            return gaussian_kde(xy.T)(pts).reshape(gx.shape)
        except np.linalg.LinAlgError:
            return None

    names = list(embedding)
    others = [n for n in names if n != observed] if observed in embedding else [None]
    ncol = min(len(others), 3)
    nrow = int(np.ceil(len(others) / ncol))
    fig = Figure(figsize=(4.4 * ncol, 4.0 * nrow), layout="constrained")
    axes = fig.subplots(nrow, ncol, squeeze=False).ravel()
    obs_d = density(np.asarray(embedding[observed])) if observed in embedding else None
    for ax, name in zip(axes, others, strict=False):
        ax.scatter(allp[:, 0], allp[:, 1], s=1, color="0.85", rasterized=True)
        shown = [name] if name is not None else names
        for nm in shown:
            i = names.index(nm)
            d = density(np.asarray(embedding[nm]))
            if d is not None:
                ax.contour(gx, gy, d, levels=_kde_levels(d, masses), colors=COLORS[i % 10],
                           linewidths=1.2)
                ax.plot([], [], color=COLORS[i % 10], label=nm)
        if obs_d is not None:
            i = names.index(observed)  # type: ignore[arg-type]
            ax.contour(gx, gy, obs_d, levels=_kde_levels(obs_d, masses), colors="k",
                       linewidths=1.0, linestyles="--")
            ax.plot([], [], "k--", label=str(observed))
        ax.set_xlabel("UMAP 1")
        ax.set_ylabel("UMAP 2")
        ax.set_title(f"{name} vs {observed}" if name and observed else "all sets")
        legend(ax, fontsize=7)
    for ax in axes[len(others):]:
        ax.set_visible(False)
    return fig
