"""``validate``: accuracy and calibration of a model bundle on a set with truth.

:func:`posterior_for_set` turns a set into representations, posterior samples and their
summaries (seeded per ``object_id``, so results do not depend on batching);
:func:`validate_set` computes every metric for the model and, beside it, for the bundle's
mass+redshift baseline; :func:`write_validation` writes ``metrics.json``, ``summary.json``,
the PNG figures, ``mass_bins.csv``, ``predictions.parquet`` and ``report.html``.
"""

from __future__ import annotations

import io
import logging
from collections.abc import Mapping
from dataclasses import dataclass, field
from typing import TYPE_CHECKING, Any

import numpy as np

from ergo_ray.errors import BadObjectError, InputError
from ergo_ray.evaluate import plots
from ergo_ray.evaluate.calibration import calibration_metrics, latent_normality
from ergo_ray.evaluate.inputs import EvalSet
from ergo_ray.evaluate.metrics import (
    MERGER_TARGETS,
    NMM_THRESHOLD,
    evaluate_predictions,
    target_metrics,
    truth_from_columns,
)
from ergo_ray.evaluate.report import Section, html_report, json_bytes
from ergo_ray.io import storage as st
from ergo_ray.io.schemas import TRUTH_COLUMNS, posterior_summary_columns
from ergo_ray.models.observables import observable_values
from ergo_ray.types import TARGETS

if TYPE_CHECKING:
    from ergo_ray.config.schema import StorageConfig

__all__ = ["Posterior", "ValidationResult", "interval_figures", "posterior_for_set",
           "validate_set", "write_validation"]

log = logging.getLogger("ergo_ray")

#: Rows per posterior call (bounds memory; results do not depend on it).
_CHUNK = 512


@dataclass
class Posterior:
    """Posterior samples and summaries of the usable rows of a set.

    Attributes
    ----------
    keep : numpy.ndarray
        bool (N,) rows of the set that were sampled (finite representation, no error).
    reps : numpy.ndarray
        float32 (n_keep, D) representations.
    cond : numpy.ndarray
        float32 (n_keep, D + k) conditions of the cINN: the representations and the
        model's observables.
    samples : numpy.ndarray
        float32 (n_keep, S, 3) posterior samples.
    summary : dict
        ``summarize`` columns, (n_keep,) each.
    errors : dict
        object_id → reason, for rows that could not be sampled.
    """

    keep: np.ndarray
    reps: np.ndarray
    cond: np.ndarray
    samples: np.ndarray
    summary: dict[str, np.ndarray]
    errors: dict[str, str] = field(default_factory=dict)


def _object_seeds(object_ids: np.ndarray, seed: int) -> np.ndarray:
    from ergo_ray.models.cinn import object_seeds

    return object_seeds([str(o) for o in object_ids], seed)


def _sample_robust(fn: Any, cond: np.ndarray, seeds: np.ndarray, n_samples: int,
                   ids: np.ndarray) -> tuple[np.ndarray, np.ndarray, dict[str, str]]:
    """Sample in chunks; a chunk that fails is retried object by object, dropping bad ones."""
    ok = np.ones(len(cond), dtype=bool)
    out = np.full((len(cond), n_samples, 3), np.nan, np.float32)
    errors: dict[str, str] = {}
    for start in range(0, len(cond), _CHUNK):
        sl = slice(start, start + _CHUNK)
        try:
            out[sl] = fn(cond[sl], n_samples, seeds=seeds[sl])
            continue
        except BadObjectError:
            pass
        for i in range(start, min(start + _CHUNK, len(cond))):
            try:
                out[i] = fn(cond[i:i + 1], n_samples, seeds=seeds[i:i + 1])[0]
            except BadObjectError as err:
                ok[i] = False
                errors[str(ids[i])] = err.reason or str(err)
    return out, ok, errors


def posterior_for_set(bundle: Any, es: EvalSet, n_samples: int, seed: int) -> Posterior:
    """Representations, posterior samples and summaries of every usable row of a set.

    Parameters
    ----------
    bundle : ergo_ray.infer.bundle.ModelBundle
        The model.
    es : EvalSet
        The set (images or stored representations).
    n_samples : int
        Samples per galaxy.
    seed : int
        Run seed, combined with each ``object_id``.

    Returns
    -------
    Posterior
        Samples and summaries of the usable rows; rows with non-finite representations,
        a missing observable (for a model conditioned on one) or non-finite posteriors are
        dropped and listed in ``errors``.

    Raises
    ------
    InputError
        If no row of the set can be sampled.
    """
    reps = es.reps if es.reps is not None else bundle.represent(es.images)
    reps = np.asarray(reps, np.float32)
    ids = es.columns["object_id"]
    cond = bundle.condition(reps, observable_values(bundle.observables, es.column, len(es)))
    finite = np.isfinite(cond).all(axis=1)
    rep_ok = np.isfinite(reps).all(axis=1)
    errors = {str(o): "nonfinite_representation" if r else "missing_observable"
              for o, r in zip(ids[~finite], rep_ok[~finite], strict=True)}
    seeds = _object_seeds(ids, seed)
    idx = np.flatnonzero(finite)
    samples, ok, errs = _sample_robust(bundle.sample_condition, cond[idx], seeds[idx],
                                       n_samples, ids[idx])
    errors.update(errs)
    keep = np.zeros(len(es), dtype=bool)
    keep[idx[ok]] = True
    if not keep.any():
        reasons = ", ".join(sorted(set(errors.values())))
        msg = f"{es.name}: no galaxy could be sampled ({len(errors)} errors: {reasons})"
        raise InputError(msg, source=es.name)
    if errors:
        log.warning("%s: %d galaxies skipped (%s)", es.name, len(errors),
                    ", ".join(sorted(set(errors.values()))))
    samples = samples[ok]
    return Posterior(keep, reps[keep], cond[keep], samples, bundle.summarize(samples), errors)


def _baseline(bundle: Any, es: EvalSet, keep: np.ndarray, n_samples: int, seed: int
              ) -> tuple[np.ndarray, dict[str, np.ndarray]] | None:
    if not getattr(bundle, "has_baseline", False):
        return None
    mass = es.column("log_mstar")[keep]
    z = es.column("redshift")[keep]
    ids = es.columns["object_id"][keep]
    ok = np.isfinite(mass) & np.isfinite(z)
    n = int(keep.sum())
    samples = np.full((n, n_samples, 3), np.nan, np.float32)
    if ok.any():
        cond = np.stack([mass[ok], z[ok]], axis=1)

        def fn(c: np.ndarray, s: int, seeds: np.ndarray) -> np.ndarray:
            return bundle.baseline_sample(c[:, 0], c[:, 1], s, seeds=seeds)

        got, good, _ = _sample_robust(fn, cond, _object_seeds(ids[ok], seed + 1), n_samples,
                                      ids[ok])
        got[~good] = np.nan
        samples[ok] = got
    summary = {k: np.full(n, np.nan) for k in posterior_summary_columns()}
    rows = np.flatnonzero(np.isfinite(samples).all(axis=(1, 2)))
    if rows.size:
        sub = bundle.summarize(samples[rows])
        for k, v in sub.items():
            summary[k][rows] = v
    return samples, summary


def _latents(bundle: Any, cond: np.ndarray, truth_cols: Mapping[str, np.ndarray],
             net_name: str = "cinn") -> np.ndarray | None:
    """Forward-pass latents z of the true targets (the method's z ~ N(0, I) check)."""
    net = getattr(bundle, net_name, None)
    transform = getattr(bundle, "transform", None)
    if net is None or transform is None:
        return None
    import torch

    from ergo_ray.models.targets import encode_truth

    y, usable = encode_truth(*(np.asarray(truth_cols[c], np.float64) for c in TRUTH_COLUMNS))
    usable &= np.isfinite(cond).all(axis=1)
    if usable.sum() < 2:
        return None
    dev = getattr(bundle, "device", "cpu")
    with torch.inference_mode():
        x = transform.forward(torch.as_tensor(y[usable], dtype=torch.float32, device=dev))
        c = torch.as_tensor(np.asarray(cond[usable], np.float32), device=dev)
        z, _ = net.forward(x, c)
    return z.double().cpu().numpy()


@dataclass
class ValidationResult:
    """Everything ``validate`` computed.

    Attributes
    ----------
    metrics : dict
        The content of ``metrics.json``.
    summary : dict
        The headline figures (``summary.json``).
    truth : dict
        Target → truth of the kept rows.
    model, baseline : dict
        Summaries of the kept rows (baseline None when the bundle has none).
    columns : dict
        Catalogue columns of the kept rows.
    """

    metrics: dict[str, Any]
    summary: dict[str, Any]
    truth: dict[str, np.ndarray]
    model: dict[str, np.ndarray]
    baseline: dict[str, np.ndarray] | None
    columns: dict[str, np.ndarray]


def _headline(metrics: Mapping[str, Any]) -> dict[str, Any]:
    def both(get: Any) -> dict[str, Any]:
        out = {"model": get(metrics["model"])}
        if metrics.get("baseline"):
            out["baseline"] = get(metrics["baseline"])
        return out

    t = lambda m, name, key: m["targets"][name][key]  # noqa: E731
    return {
        "model_id": metrics["model_id"],
        "set": metrics["set"],
        "n_objects": metrics["n_objects"],
        "exsitu_frac_within_0.1": both(lambda m: t(m, "exsitu_frac", "frac_within_0.1")),
        "lmm_log_mass_within_0.5dex_mstar_gt_9.5": both(
            lambda m: t(m, "lmm_log_mass", "frac_within_0.5dex")),
        "lmm_lookback_gyr_mae": both(lambda m: t(m, "lmm_lookback_gyr", "mae")),
        "lmm_lookback_within_1gyr": both(lambda m: t(m, "lmm_lookback_gyr", "frac_within_1gyr")),
        "lmm_lookback_within_2gyr": both(lambda m: t(m, "lmm_lookback_gyr", "frac_within_2gyr")),
        "nmm_accuracy": both(lambda m: (m.get("nmm") or {}).get("accuracy")),
        "bias": {name: both(lambda m, n=name: t(m, n, "bias")) for name in TARGETS},
        "mae": {name: both(lambda m, n=name: t(m, n, "mae")) for name in TARGETS},
        "coverage_max_abs_deviation": {
            name: both(lambda m, n=name: m["calibration"][n]["coverage"]["max_abs_deviation"])
            for name in TARGETS},
        "pit_mean": {name: both(lambda m, n=name: m["calibration"][n]["pit"]["mean"])
                     for name in TARGETS},
        "calibration": {name: both(lambda m, n=name: interval_figures(m, n))
                        for name in TARGETS},
    }


def interval_figures(m: Mapping[str, Any], name: str) -> dict[str, Any]:
    """Coverage of the 68 % and 90 % intervals, PIT KS and mean, and bias of one target.

    Parameters
    ----------
    m : mapping
        The ``model`` (or ``baseline``) section of ``metrics.json``.
    name : str
        Target name.

    Returns
    -------
    dict
        ``c68``, ``c90``, ``pit_ks``, ``pit_mean``, ``bias`` and ``n`` (None where not
        measured).
    """
    cal = m["calibration"][name]
    cov = cal["coverage"]
    at = {round(float(lv), 4): c for lv, c in zip(cov["levels"], cov["coverage"], strict=True)}
    return {"c68": at.get(0.68), "c90": at.get(0.9), "pit_ks": cal["pit"].get("ks"),
            "pit_mean": cal["pit"].get("mean"), "bias": m["targets"][name]["bias"],
            "n": cov.get("n")}


def validate_set(bundle: Any, es: EvalSet, n_samples: int, seed: int,
                 mass_bins: tuple[float, ...]) -> ValidationResult:
    """Sample, summarise and score a set with truth.

    Parameters
    ----------
    bundle : ergo_ray.infer.bundle.ModelBundle
        The model.
    es : EvalSet
        The set; must carry the ``true_*`` columns (joined from ``--truth`` if need be).
    n_samples : int
        Posterior samples per galaxy.
    seed : int
        Run seed.
    mass_bins : tuple of float
        Stellar-mass bin edges.

    Returns
    -------
    ValidationResult
        Metrics for the model and the baseline.

    Raises
    ------
    InputError
        If the set has no truth.
    """
    missing = [c for c in TRUTH_COLUMNS if c not in es.columns]
    if missing or not np.isfinite(es.column("true_exsitu_frac")).any():
        what = missing or ["true_exsitu_frac"]
        msg = (f"{es.name}: no truth to validate against (missing or empty {what}); "
               "pass --truth URL for a survey whose truth is kept apart")
        raise InputError(msg, source=es.name)
    post = posterior_for_set(bundle, es, n_samples, seed)
    keep = post.keep
    cols = {k: v[keep] for k, v in es.columns.items()}
    truth = truth_from_columns(cols)
    mass = np.asarray(cols.get("log_mstar", np.full(int(keep.sum()), np.nan)), np.float64)
    scored = np.isfinite(truth["exsitu_frac"])

    def score(samples: np.ndarray, summary: Mapping[str, np.ndarray], cond: np.ndarray | None,
              net: str) -> dict[str, Any]:
        sel = scored & np.isfinite(samples).all(axis=(1, 2))
        summ = {k: np.asarray(v)[sel] for k, v in summary.items()}
        tr = {k: v[sel] for k, v in truth.items()}
        out = evaluate_predictions(summ, tr, mass[sel], mass_bins)
        out["n"] = int(sel.sum())
        out["calibration"] = calibration_metrics(samples[sel], tr)
        if cond is not None:
            z = _latents(bundle, cond[sel], {c: cols[c][sel] for c in TRUTH_COLUMNS}, net)
            out["latent_normality"] = latent_normality(z) if z is not None else None
        return out

    metrics: dict[str, Any] = {
        "model_id": getattr(bundle, "model_id", None),
        "set": es.name,
        "inputs": [st.redact(u) for u in es.sources],
        "n_objects": int(keep.sum()),
        "n_skipped": len(post.errors),
        "n_samples": int(n_samples),
        "domains": {str(d): int(n) for d, n in zip(*np.unique(
            cols.get("domain", np.array(["?"] * int(keep.sum()), dtype=object)).astype(str),
            return_counts=True), strict=True)},
        "mass_bins": list(mass_bins),
        "model": score(post.samples, post.summary, post.cond, "cinn"),
    }
    base = _baseline(bundle, es, keep, n_samples, seed)
    b_summary = None
    if base is not None:
        b_samples, b_summary = base
        scaler = getattr(bundle, "baseline_scaler", None)
        cond = None
        if scaler is not None:
            raw = np.stack([mass, np.asarray(cols["redshift"], np.float64)], axis=1)
            cond = np.asarray(scaler.forward(raw), np.float32)
        metrics["baseline"] = score(b_samples, b_summary, cond, "baseline")
    else:
        metrics["baseline"] = None
    doms = np.asarray(cols.get("domain", np.array([], dtype=object))).astype(str)
    if len(set(doms.tolist())) > 1:
        per: dict[str, Any] = {}
        for d in sorted(set(doms.tolist())):
            sel = (doms == d) & scored
            tr = {k: v[sel] for k, v in truth.items()}
            per[d] = {"n": int(sel.sum()),
                      "model": target_metrics({k: v[sel] for k, v in post.summary.items()},
                                              tr, mass[sel])}
            if b_summary is not None:
                per[d]["baseline"] = target_metrics({k: v[sel] for k, v in b_summary.items()},
                                                    tr, mass[sel])
        metrics["per_domain"] = per
    metrics["bias"] = {name: metrics["model"]["targets"][name]["bias"] for name in TARGETS}
    return ValidationResult(metrics, _headline(metrics), truth, post.summary, b_summary, cols)


# ---------------------------------------------------------------------------- output
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


def write_validation(out: str, res: ValidationResult, storage: StorageConfig | None = None
                     ) -> list[str]:
    """Write every output of ``validate`` under ``out``.

    Parameters
    ----------
    out : str
        Output folder URL.
    res : ValidationResult
        From :func:`validate_set`.
    storage : StorageConfig, optional
        Storage settings.

    Returns
    -------
    list of str
        Names of the files written.
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
    for name, data in files.items():
        st.write_bytes(st.join(out, name), data, storage)
    return sorted(files)


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
