"""The outputs of ``validate``: ``metrics.json``, ``summary.json``, figures and the report.

:func:`write_validation` writes a :class:`~ergo_ray.evaluate.validation.ValidationResult`
as ``metrics.json``, ``summary.json``, the PNG figures, ``mass_bins.csv``,
``predictions.parquet`` and ``report.html``.
"""

from __future__ import annotations

import io
from collections.abc import Mapping
from typing import TYPE_CHECKING, Any

import numpy as np

from ergo_ray.evaluate import plots
from ergo_ray.evaluate.metrics import MERGER_TARGETS, NMM_THRESHOLD
from ergo_ray.evaluate.report import Section, html_report, json_bytes, write_files
from ergo_ray.evaluate.validation import ValidationResult, interval_figures
from ergo_ray.io.schemas import TRUTH_COLUMNS
from ergo_ray.types import TARGETS

if TYPE_CHECKING:
    from ergo_ray.config.schema import StorageConfig

__all__ = ["validation_figures", "write_validation"]


def _mass_bin_csv(metrics: Mapping[str, Any]) -> bytes:
    lines = ["estimator,target,lo,hi,n,mae,rmse,bias"]
    for label in ("model", "baseline"):
        m = metrics.get(label)
        if not m or "mass_bins" not in m:
            continue
        for name, rows in m["mass_bins"].items():
            for r in rows:
                vals = [r[k] for k in ("mae", "rmse", "bias")]
                cells = ["" if not np.isfinite(v) else f"{v:.6g}" for v in vals]
                lines.append(f"{label},{name},{r['lo']:g},{r['hi']:g},{r['n']}," + ",".join(cells))
    return ("\n".join(lines) + "\n").encode()


def _predictions_parquet(res: ValidationResult) -> bytes:
    import pyarrow as pa
    import pyarrow.parquet as pq

    cols: dict[str, Any] = {}
    for c in ("object_id", "root_id", "domain"):
        if c in res.columns:
            cols[c] = pa.array([None if v is None else str(v) for v in res.columns[c]],
                               pa.string())
    for c in ("redshift", "log_mstar", *TRUTH_COLUMNS):
        if c in res.columns:
            cols[c] = pa.array(np.asarray(res.columns[c], np.float64))
    for k, v in res.model.items():
        cols[k] = pa.array(np.asarray(v, np.float64))
    for k, v in (res.baseline or {}).items():
        cols[f"baseline_{k}"] = pa.array(np.asarray(v, np.float64))
    buf = io.BytesIO()
    pq.write_table(pa.table(cols), buf)
    return buf.getvalue()


def _point(summary: Mapping[str, np.ndarray], target: str) -> np.ndarray:
    """MAP of a target; NaN for merger targets where no major merger is predicted."""
    v = np.asarray(summary[f"{target}_map"], np.float64).copy()
    if target in MERGER_TARGETS:
        v[np.asarray(summary["p_no_major_merger"], np.float64) >= NMM_THRESHOLD] = np.nan
    return v


def _fmt_pct(v: Any) -> str:
    return "–" if v is None or not np.isfinite(v) else f"{100 * v:.1f} %"


def validation_figures(res: ValidationResult) -> dict[str, bytes]:
    """Draw the figures of ``validate`` for the model and, beside it, the baseline.

    Parameters
    ----------
    res : ValidationResult
        From :func:`~ergo_ray.evaluate.validation.validate_set`.

    Returns
    -------
    dict of str to bytes
        PNG file name → content: MAP vs truth per target, |error| vs posterior std,
        coverage, PIT, errors per mass bin and (where measured) the no-major-merger
        confusion matrices.
    """
    m = res.metrics
    labels = {"model": res.model}
    if res.baseline is not None:
        labels["baseline"] = res.baseline
    pngs: dict[str, bytes] = {}
    for name in TARGETS:
        panels = [(lab, _point(summ, name), res.truth[name]) for lab, summ in labels.items()]
        nmm = [(m[lab] or {}).get("nmm") for lab in labels]
        pngs[f"map_vs_truth_{name}.png"] = plots.figure_png(
            plots.map_vs_truth_figure(name, panels, nmm))
    pngs["error_vs_std.png"] = plots.figure_png(plots.error_vs_std_figure(
        {t: _point(res.model, t) - res.truth[t] for t in TARGETS},
        {t: res.model[f"{t}_std"] for t in TARGETS}))
    pngs["coverage.png"] = plots.figure_png(plots.coverage_figure(
        {lab: {t: m[lab]["calibration"][t]["coverage"] for t in TARGETS} for lab in labels}))
    pngs["pit.png"] = plots.figure_png(plots.pit_figure(
        {lab: {t: m[lab]["calibration"][t]["pit"] for t in TARGETS} for lab in labels}))
    pngs["mass_bins.png"] = plots.figure_png(plots.mass_bin_figure(
        {lab: m[lab].get("mass_bins", {}) for lab in labels}))
    if all(m[lab].get("nmm") for lab in labels):
        pngs["nmm_confusion.png"] = plots.figure_png(plots.nmm_confusion_figure(
            {lab: m[lab]["nmm"] for lab in labels}))
    return pngs


def write_validation(out: str, res: ValidationResult, storage: StorageConfig | None = None
                     ) -> list[str]:
    """Write the result of ``validate`` (tables, figures, report) into the folder ``out``.

    Parameters
    ----------
    out : str
        The folder (a local path or a storage URL) to write into.
    res : ValidationResult
        From :func:`~ergo_ray.evaluate.validation.validate_set`.
    storage : StorageConfig, optional
        Credentials and endpoint of an object store.

    Returns
    -------
    list of str
        The file names, sorted.
    """
    m = res.metrics
    pngs = validation_figures(res)
    files = {
        "metrics.json": json_bytes(m),
        "summary.json": json_bytes(res.summary),
        "mass_bins.csv": _mass_bin_csv(m),
        "predictions.parquet": _predictions_parquet(res),
        **pngs,
    }
    files["report.html"] = html_report(
        f"ergo_ray validation: {m['set']}", _report_sections(res, pngs),
        subtitle=f"model {m['model_id']} · {m['n_objects']} galaxies · {m['n_samples']} "
                 f"posterior samples each · domains {m['domains']}")
    return write_files(out, files, storage)


def _report_sections(res: ValidationResult, pngs: Mapping[str, bytes]) -> list[Section]:
    m = res.metrics
    labs = [lab for lab in ("model", "baseline") if m.get(lab)]
    head = ["metric", *labs]

    def row(label: str, get: Any, pct: bool = True) -> list[Any]:
        vals = [get(m[lab]) for lab in labs]
        return [label, *[_fmt_pct(v) if pct else v for v in vals]]

    tt = lambda n, k: (lambda x: x["targets"][n][k])  # noqa: E731
    acc = [
        row("ex-situ |MAP − truth| ≤ 0.1", tt("exsitu_frac", "frac_within_0.1")),
        row("merger mass within ±0.5 dex (log M* > 9.5)", tt("lmm_log_mass", "frac_within_0.5dex")),
        row("lookback MAE [Gyr]", tt("lmm_lookback_gyr", "mae"), pct=False),
        row("lookback within 1 Gyr", tt("lmm_lookback_gyr", "frac_within_1gyr")),
        row("lookback within 2 Gyr", tt("lmm_lookback_gyr", "frac_within_2gyr")),
        row("no-major-merger accuracy", lambda x: (x.get("nmm") or {}).get("accuracy")),
        row("NMM precision", lambda x: (x.get("nmm") or {}).get("precision")),
        row("NMM recall", lambda x: (x.get("nmm") or {}).get("recall")),
    ]
    for name in TARGETS:
        acc.append(row(f"{name} bias", tt(name, "bias"), pct=False))
        acc.append(row(f"{name} RMSE", tt(name, "rmse"), pct=False))
    cal = []
    for name in TARGETS:
        for key, label in (("c68", "coverage of the 68 % interval"),
                           ("c90", "coverage of the 90 % interval")):
            cal.append(row(f"{name}: {label}",
                           lambda x, n=name, k=key: interval_figures(x, n)[k]))
        cal.append(row(f"{name}: max |coverage − nominal|",
                       lambda x, n=name: x["calibration"][n]["coverage"]["max_abs_deviation"],
                       pct=False))
        cal.append(row(f"{name}: PIT KS distance",
                       lambda x, n=name: x["calibration"][n]["pit"]["ks"], pct=False))
    for lab in labs:
        ln = m[lab].get("latent_normality")
        if ln:
            cal.append([f"{lab}: latent max|mean|, max|std−1|, ‖cov−I‖",
                        f"{ln['max_abs_mean']:.3f}, {ln['max_abs_std_dev']:.3f}, "
                        f"{ln['cov_residual']:.3f}", *([""] * (len(labs) - 1))])
    bins = []
    for lab in labs:
        for name, rows in (m[lab].get("mass_bins") or {}).items():
            bins.extend([lab, name, f"{r['lo']:g}–{r['hi']:g}", r["n"], r["mae"], r["rmse"],
                         r["bias"]] for r in rows)
    secs = [
        Section("Accuracy (paper metrics)", [
            "MAP = the most prominent KDE peak of the posterior samples; merger targets are "
            "scored where both truth and prediction are mergers (p_no_major_merger < 0.5)."],
            [(head, acc)],
            [(f"MAP vs truth: {n}", pngs[f"map_vs_truth_{n}.png"]) for n in TARGETS]),
        Section("Errors per stellar-mass bin",
                tables=[(["estimator", "target", "log M* bin", "n", "MAE", "RMSE", "bias"], bins)],
                images=[("MAE and bias per mass bin", pngs["mass_bins.png"])]),
        Section("Calibration", [
            "Coverage of central credible intervals at 10 levels (ideal: the diagonal), PIT "
            "histograms (ideal: flat), and the forward latents of the true targets (ideal: "
            "N(0, I))."], [(head, cal)],
            [("coverage", pngs["coverage.png"]), ("PIT", pngs["pit.png"]),
             ("|error| vs posterior std", pngs["error_vs_std.png"])]),
    ]
    if "nmm_confusion.png" in pngs:
        secs.append(Section("No-major-merger classification",
                            images=[("confusion matrices", pngs["nmm_confusion.png"])]))
    if m.get("per_domain"):
        rows = [[d, v["n"], _fmt_pct(v["model"]["exsitu_frac"]["frac_within_0.1"]),
                 v["model"]["exsitu_frac"]["bias"], v["model"]["lmm_lookback_gyr"]["mae"]]
                for d, v in m["per_domain"].items()]
        secs.append(Section("Per domain (model)", tables=[(
            ["domain", "n", "ex-situ within 0.1", "ex-situ bias", "lookback MAE"], rows)]))
    return secs
