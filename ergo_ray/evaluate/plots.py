"""Validation figures and the helpers every figure shares (matplotlib, no pyplot state).

Every function returns a :class:`matplotlib.figure.Figure`; :func:`figure_png` turns one
into PNG bytes. Nothing here calls ``plt.show()`` or touches the global pyplot state, so the
functions are safe in worker processes and tests.
"""

from __future__ import annotations

import io
from collections.abc import Mapping, Sequence
from typing import Any

import numpy as np
from matplotlib.colors import LogNorm
from matplotlib.figure import Figure

from ergo_ray.types import TARGETS

__all__ = [
    "COLORS",
    "TARGET_LABELS",
    "TARGET_RANGES",
    "binned_percentiles",
    "coverage_figure",
    "error_vs_std_figure",
    "figure_png",
    "legend",
    "map_vs_truth_figure",
    "mass_bin_figure",
    "nmm_confusion_figure",
    "pit_figure",
]

#: Axis labels of the targets.
TARGET_LABELS: dict[str, str] = {
    "exsitu_frac": "ex-situ stellar fraction",
    "lmm_lookback_gyr": "lookback time of last major merger [Gyr]",
    "lmm_log_mass": r"$\log_{10}$ M$_*$ of last major merger [M$_\odot$]",
}
#: Plot ranges of the targets (the valid ranges for the merger targets).
TARGET_RANGES: dict[str, tuple[float, float]] = {
    "exsitu_frac": (0.0, 1.0),
    "lmm_lookback_gyr": (0.0, 13.7),
    "lmm_log_mass": (7.0, 11.5),
}
#: Line colours, one per set or estimator.
COLORS = ("C0", "C1", "C2", "C3", "C4", "C5", "C6", "C7", "C8", "C9")


def figure_png(fig: Figure, dpi: int = 100) -> bytes:
    """Render a figure to PNG bytes.

    Parameters
    ----------
    fig : matplotlib.figure.Figure
        The figure.
    dpi : int
        Resolution.

    Returns
    -------
    bytes
        The PNG file content.
    """
    buf = io.BytesIO()
    fig.savefig(buf, format="png", dpi=dpi, bbox_inches="tight")
    return buf.getvalue()


def binned_percentiles(
    x: np.ndarray, y: np.ndarray, edges: np.ndarray | Sequence[float],
    percentiles: Sequence[float] = (10, 50, 90), min_count: int = 5,
) -> tuple[np.ndarray, np.ndarray, np.ndarray]:
    """Percentiles of ``y`` in bins of ``x`` (running median and 80 % band).

    Parameters
    ----------
    x, y : numpy.ndarray
        (N,) values; non-finite pairs are skipped.
    edges : array-like
        Bin edges in x.
    percentiles : sequence of float
        Percentiles of y per bin.
    min_count : int
        Bins with fewer points give NaN.

    Returns
    -------
    centres : numpy.ndarray
        (B,) bin centres.
    values : numpy.ndarray
        (B, len(percentiles)) percentiles.
    counts : numpy.ndarray
        (B,) points per bin.
    """
    x = np.asarray(x, dtype=np.float64)
    y = np.asarray(y, dtype=np.float64)
    ok = np.isfinite(x) & np.isfinite(y)
    x, y = x[ok], y[ok]
    e = np.asarray(edges, dtype=np.float64)
    idx = np.digitize(x, e) - 1
    nb = e.size - 1
    vals = np.full((nb, len(percentiles)), np.nan)
    counts = np.bincount(idx[(idx >= 0) & (idx < nb)], minlength=nb)
    for b in range(nb):
        if counts[b] >= min_count:
            vals[b] = np.percentile(y[idx == b], percentiles)
    return 0.5 * (e[:-1] + e[1:]), vals, counts


def legend(ax: Any, **kwargs: Any) -> None:
    """Draw a legend only when something is labelled (matplotlib warns otherwise)."""
    if ax.get_legend_handles_labels()[0]:
        ax.legend(**kwargs)


def _no_data(ax: Any, text: str = "no data") -> None:
    ax.text(0.5, 0.5, text, ha="center", va="center", transform=ax.transAxes, color="0.4")


def _hist2d(ax: Any, x: np.ndarray, y: np.ndarray, rng: tuple[float, float] | tuple[
        tuple[float, float], tuple[float, float]], bins: int = 40, weights: np.ndarray | None = None
            ) -> Any:
    r = rng if isinstance(rng[0], tuple) else (rng, rng)
    h, xe, ye = np.histogram2d(x, y, bins=bins, range=r, weights=weights)
    h = np.where(h > 0, h, np.nan)
    if not np.isfinite(h).any():
        _no_data(ax)
        return None
    vmin = float(np.nanmin(h))
    vmax = max(float(np.nanmax(h)), vmin * 1.0001 + 1e-12)
    return ax.pcolormesh(xe, ye, h.T, norm=LogNorm(vmin=vmin, vmax=vmax), cmap="viridis",
                         shading="flat", rasterized=True)


def map_vs_truth_figure(
    target: str,
    panels: Sequence[tuple[str, np.ndarray, np.ndarray]],
    nmm: Sequence[Mapping[str, Any] | None] | None = None,
) -> Figure:
    """MAP vs truth as 2-D histograms with the running median and 10th/90th percentiles.

    Parameters
    ----------
    target : str
        Target name (for labels and ranges).
    panels : sequence of (str, numpy.ndarray, numpy.ndarray)
        ``(title, prediction, truth)`` per panel, e.g. the model and the mass+redshift
        baseline side by side. Pairs with a NaN are left out (no-merger galaxies).
    nmm : sequence of dict or None, optional
        Per panel, the no-major-merger classification (annotated on merger targets).

    Returns
    -------
    matplotlib.figure.Figure
        One row of panels.
    """
    lo, hi = TARGET_RANGES[target]
    fig = Figure(figsize=(4.6 * len(panels), 4.2), layout="constrained")
    axes = fig.subplots(1, len(panels), squeeze=False)[0]
    edges = np.linspace(lo, hi, 11)
    for i, (title, pred, truth) in enumerate(panels):
        ax = axes[i]
        p, t = np.asarray(pred, dtype=float), np.asarray(truth, dtype=float)
        ok = np.isfinite(p) & np.isfinite(t)
        mesh = _hist2d(ax, t[ok], p[ok], (lo, hi))
        if mesh is not None:
            fig.colorbar(mesh, ax=ax, label="galaxies")
            c, v, _ = binned_percentiles(t[ok], p[ok], edges)
            ax.plot(c, v[:, 1], "-", color="w", lw=2.2)
            ax.plot(c, v[:, 1], "-", color="k", lw=1.2, label="median")
            ax.plot(c, v[:, 0], "--", color="k", lw=1, label="10th/90th pct")
            ax.plot(c, v[:, 2], "--", color="k", lw=1)
        ax.plot([lo, hi], [lo, hi], ":", color="r", lw=1, label="1:1")
        ax.set_xlim(lo, hi)
        ax.set_ylim(lo, hi)
        ax.set_xlabel(f"true {TARGET_LABELS[target]}")
        ax.set_ylabel(f"MAP {TARGET_LABELS[target]}")
        ax.set_title(f"{title} (n={int(ok.sum())})")
        cls = nmm[i] if nmm and i < len(nmm) else None
        if cls and target != "exsitu_frac":
            cm = cls["confusion"]
            nm = max(cm[1][0] + cm[1][1], 1)
            mm = max(cm[0][0] + cm[0][1], 1)
            ax.text(0.02, 0.98, f"NMM recovered: {cm[1][1] / nm:.0%}\n"
                    f"mergers called NMM: {cm[0][1] / mm:.0%}",
                    transform=ax.transAxes, va="top", fontsize=8,
                    bbox={"fc": "w", "alpha": 0.7, "lw": 0})
        legend(ax, loc="lower right", fontsize=8)
    return fig


def error_vs_std_figure(
    errors: Mapping[str, np.ndarray], stds: Mapping[str, np.ndarray]
) -> Figure:
    """Absolute error of the MAP against the posterior standard deviation, per target.

    The 68 % and 95 % quantiles of |error| in bins of σ are drawn beside the ideal 1σ and
    2σ lines of a Gaussian posterior.

    Parameters
    ----------
    errors : mapping
        Target → (N,) MAP − truth (NaN skipped).
    stds : mapping
        Target → (N,) posterior standard deviation.

    Returns
    -------
    matplotlib.figure.Figure
        One panel per target.
    """
    fig = Figure(figsize=(13.5, 4.0), layout="constrained")
    axes = fig.subplots(1, len(TARGETS))
    for ax, name in zip(axes, TARGETS, strict=True):
        e = np.abs(np.asarray(errors[name], dtype=float))
        s = np.asarray(stds[name], dtype=float)
        ok = np.isfinite(e) & np.isfinite(s)
        if ok.sum() < 2:
            _no_data(ax)
            ax.set_title(name)
            continue
        smax = float(np.percentile(s[ok], 99)) or 1.0
        emax = float(np.percentile(e[ok], 99)) or 1.0
        mesh = _hist2d(ax, s[ok], e[ok], ((0.0, smax), (0.0, emax)), bins=30)
        if mesh is not None:
            fig.colorbar(mesh, ax=ax, label="galaxies")
        c, v, _ = binned_percentiles(s[ok], e[ok], np.linspace(0, smax, 9), (68.27, 95.45))
        ax.plot(c, v[:, 0], "-", color="k", label="68 % of |error|")
        ax.plot(c, v[:, 1], "--", color="k", label="95 % of |error|")
        xs = np.array([0.0, smax])
        ax.plot(xs, xs, ":", color="r", label=r"1$\sigma$")
        ax.plot(xs, 2 * xs, "-.", color="r", label=r"2$\sigma$")
        ax.set_xlim(0, smax)
        ax.set_ylim(0, emax)
        ax.set_xlabel("posterior std")
        ax.set_ylabel("|MAP − truth|")
        ax.set_title(TARGET_LABELS[name], fontsize=9)
        legend(ax, fontsize=7, loc="upper left")
    return fig


def coverage_figure(curves: Mapping[str, Mapping[str, Mapping[str, Any]]]) -> Figure:
    """Coverage of central credible intervals against nominal level, per target.

    Parameters
    ----------
    curves : mapping
        Label (e.g. "model", "baseline") → target → output of
        :func:`~ergo_ray.evaluate.calibration.coverage_curve`.

    Returns
    -------
    matplotlib.figure.Figure
        One panel per target, the diagonal marking perfect calibration.
    """
    fig = Figure(figsize=(12.5, 4.0), layout="constrained")
    axes = fig.subplots(1, len(TARGETS))
    for ax, name in zip(axes, TARGETS, strict=True):
        ax.plot([0, 1], [0, 1], ":", color="0.4", label="ideal")
        for i, (label, per_target) in enumerate(curves.items()):
            cv = per_target.get(name)
            if not cv or not cv.get("n"):
                continue
            lv = np.asarray(cv["levels"])
            cov = np.asarray(cv["coverage"])
            err = np.asarray(cv["stderr"])
            if i == 0:
                ax.fill_between(lv, lv - 2 * err, lv + 2 * err, color="0.85", lw=0,
                                label=r"ideal $\pm 2\sigma$")
            ax.plot(lv, cov, "o-", color=COLORS[i], ms=3, label=f"{label} (n={cv['n']})")
        ax.set_xlim(0, 1)
        ax.set_ylim(0, 1)
        ax.set_xlabel("nominal central-interval probability")
        ax.set_ylabel("empirical coverage")
        ax.set_title(TARGET_LABELS[name], fontsize=9)
        legend(ax, fontsize=7, loc="upper left")
    return fig


def pit_figure(pits: Mapping[str, Mapping[str, Mapping[str, Any]]]) -> Figure:
    """PIT histograms per target (flat = calibrated).

    Parameters
    ----------
    pits : mapping
        Label → target → :func:`~ergo_ray.evaluate.calibration.pit_histogram`.

    Returns
    -------
    matplotlib.figure.Figure
        One panel per target, densities normalised so that 1 is flat.
    """
    fig = Figure(figsize=(12.5, 3.8), layout="constrained")
    axes = fig.subplots(1, len(TARGETS))
    for ax, name in zip(axes, TARGETS, strict=True):
        ax.axhline(1.0, ls=":", color="0.4")
        for i, (label, per_target) in enumerate(pits.items()):
            ph = per_target.get(name)
            if not ph or not ph.get("n"):
                continue
            edges = np.asarray(ph["edges"])
            dens = np.asarray(ph["density"])
            ax.stairs(dens, edges, color=COLORS[i], lw=1.5, fill=i == 0,
                      alpha=0.35 if i == 0 else 1,
                      label=f"{label} (KS={ph['ks']:.3f})")
        ax.set_xlim(0, 1)
        ax.set_ylim(bottom=0)
        ax.set_xlabel("PIT")
        ax.set_ylabel("density")
        ax.set_title(TARGET_LABELS[name], fontsize=9)
        legend(ax, fontsize=7)
    return fig


def mass_bin_figure(tables: Mapping[str, Mapping[str, Sequence[Mapping[str, Any]]]]) -> Figure:
    """MAE and bias per stellar-mass bin, per target.

    Parameters
    ----------
    tables : mapping
        Label → target → rows of :func:`~ergo_ray.evaluate.metrics.mass_bin_metrics`.

    Returns
    -------
    matplotlib.figure.Figure
        One panel per target: MAE (solid) and bias (dashed) against bin centre.
    """
    fig = Figure(figsize=(12.5, 3.8), layout="constrained")
    axes = fig.subplots(1, len(TARGETS))
    for ax, name in zip(axes, TARGETS, strict=True):
        ax.axhline(0.0, color="0.6", lw=0.8)
        for i, (label, per_target) in enumerate(tables.items()):
            rows = per_target.get(name) or []
            if not rows:
                continue
            c = np.array([0.5 * (r["lo"] + r["hi"]) for r in rows])
            mae = np.array([r["mae"] for r in rows], dtype=float)
            bias = np.array([r["bias"] for r in rows], dtype=float)
            ax.plot(c, mae, "o-", color=COLORS[i], ms=3, label=f"{label} MAE")
            ax.plot(c, bias, "s--", color=COLORS[i], ms=3, label=f"{label} bias")
        ax.set_xlabel(r"$\log_{10}$ M$_*$ [M$_\odot$]")
        ax.set_ylabel("error")
        ax.set_title(TARGET_LABELS[name], fontsize=9)
        legend(ax, fontsize=7)
    return fig


def nmm_confusion_figure(results: Mapping[str, Mapping[str, Any]]) -> Figure:
    """Confusion matrices of the no-major-merger classification.

    Parameters
    ----------
    results : mapping
        Label → :func:`~ergo_ray.evaluate.metrics.nmm_classification` output.

    Returns
    -------
    matplotlib.figure.Figure
        One matrix per label, rows truth, columns prediction, cells row-normalised.
    """
    fig = Figure(figsize=(3.8 * max(len(results), 1), 3.6), layout="constrained")
    axes = fig.subplots(1, max(len(results), 1), squeeze=False)[0]
    for ax, (label, res) in zip(axes, results.items(), strict=False):
        cm = np.asarray(res["confusion"], dtype=float)
        norm = cm / np.maximum(cm.sum(axis=1, keepdims=True), 1)
        ax.imshow(norm, vmin=0, vmax=1, cmap="Blues")
        for (r, c), v in np.ndenumerate(cm):
            ax.text(c, r, f"{int(v)}\n{norm[r, c]:.0%}", ha="center", va="center",
                    color="w" if norm[r, c] > 0.5 else "k", fontsize=9)
        ax.set_xticks([0, 1], ["merger", "NMM"])
        ax.set_yticks([0, 1], ["merger", "NMM"])
        ax.set_xlabel("predicted")
        ax.set_ylabel("true")
        ax.set_title(f"{label}: precision {res['precision']:.2f}, recall {res['recall']:.2f}",
                     fontsize=9)
    return fig
