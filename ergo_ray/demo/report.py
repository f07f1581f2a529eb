"""The demo's report: one self-contained ``report.html`` and the summary table.

It reads what the stages wrote (``validate/*/summary.json``, ``compare/summary.json``,
``nnclr/metrics.jsonl``, the figures) and puts the headline figures first, beside the paper's
numbers and the mass+redshift baseline.
"""

from __future__ import annotations

import json
import math
import numbers
from collections.abc import Sequence
from typing import Any

from ergo_ray.config.schema import RunConfig
from ergo_ray.demo.domains import domain_figures, domain_rows, oracle_figures
from ergo_ray.demo.plan import DOMAIN_WEIGHTS, Stage
from ergo_ray.errors import InputError
from ergo_ray.evaluate.report import Section, html_report, json_bytes
from ergo_ray.evaluate.science import exsitu_difference_at_fixed_mass
from ergo_ray.io import storage
from ergo_ray.io.catalog import read_catalog, read_parquet_file

#: The paper's headline (Eisert et al. 2026 abstract): 80 % within ±0.1 in ex-situ fraction.
PAPER_EXSITU_WITHIN_01 = 0.80


class _Doc(dict):
    """A stage's JSON output that remembers where it came from (for error messages)."""

    url: str = ""


def _read_json(url: str, cfg: RunConfig) -> _Doc:
    """Read a stage's JSON output; a finished demo has every one of them.

    Raises
    ------
    InputError
        Naming the file, if it does not exist.
    """
    if not storage.exists(url, cfg.storage):
        msg = f"{storage.redact(url)}: missing (the demo's stages did not all finish)"
        raise InputError(msg, source=url)
    doc = _Doc(json.loads(storage.read_bytes(url, cfg.storage)))
    doc.url = storage.redact(url)
    return doc


def _pngs(folder: str, cfg: RunConfig) -> list[tuple[str, bytes]]:
    if not storage.exists(folder, cfg.storage):
        return []
    files = storage.list_files(folder, cfg.storage, (".png",))
    return [
        (
            f.rsplit("/", 1)[-1].removesuffix(".png").replace("_", " "),
            storage.read_bytes(f, cfg.storage),
        )
        for f in files
        if f.rsplit("/", 1)[0].rstrip("/") == storage.locate(folder).url.rstrip("/")
    ]


def _get(doc: _Doc, *keys: str) -> Any:
    """Return ``doc[k1][k2]...``; a missing key is an error naming the file and the key.

    A stage writes NaN as ``null`` (strict JSON), so a value of None is a NaN figure, not a
    missing one; a renamed metric fails here instead of showing as "–".
    """
    d: Any = doc
    for i, k in enumerate(keys):
        if not isinstance(d, dict) or k not in d:
            path = ".".join(keys[: i + 1])
            msg = f"{doc.url}: no '{path}' (a stage renamed or dropped this figure)"
            raise InputError(msg, source=doc.url)
        d = d[k]
    return d


def _num(v: Any) -> float:
    """Return a figure as a float: None (a NaN written as null) is NaN, a non-number an error."""
    if v is None:
        return float("nan")
    if isinstance(v, bool) or not isinstance(v, numbers.Real):
        msg = f"expected a number, got {v!r}"
        raise TypeError(msg)
    return float(v)


def summarize(out: str, cfg: RunConfig) -> dict[str, Any]:
    """Collect the headline figures of a finished demo.

    Parameters
    ----------
    out : str
        Demo output URL.
    cfg : RunConfig
        For storage settings.

    Returns
    -------
    dict
        Flat figures: accuracy (model, baseline), coverage, OOD ranking, hsc bias.
    """
    tng = _read_json(storage.join(out, "validate", "tng", "summary.json"), cfg)
    hsc = _read_json(storage.join(out, "validate", "hsc", "summary.json"), cfg)
    eagle = _read_json(storage.join(out, "validate", "eagle", "summary.json"), cfg)
    cmp_ = _read_json(storage.join(out, "compare", "summary.json"), cfg)
    tng_metrics = _read_json(storage.join(out, "validate", "tng", "metrics.json"), cfg)
    s: dict[str, Any] = {
        "exsitu_within_0.1_model": _num(_get(tng, "exsitu_frac_within_0.1", "model")),
        "exsitu_within_0.1_baseline": _num(_get(tng, "exsitu_frac_within_0.1", "baseline")),
        "lmm_mass_within_0.5dex_model": _num(
            _get(tng, "lmm_log_mass_within_0.5dex_mstar_gt_9.5", "model")
        ),
        "lmm_mass_within_0.5dex_baseline": _num(
            _get(tng, "lmm_log_mass_within_0.5dex_mstar_gt_9.5", "baseline")
        ),
        "lmm_lookback_mae_model": _num(_get(tng, "lmm_lookback_gyr_mae", "model")),
        "lmm_lookback_mae_baseline": _num(_get(tng, "lmm_lookback_gyr_mae", "baseline")),
        "eagle_exsitu_within_0.1_model": _num(_get(eagle, "exsitu_frac_within_0.1", "model")),
        "eagle_exsitu_within_0.1_baseline": _num(_get(eagle, "exsitu_frac_within_0.1", "baseline")),
        "hsc_exsitu_bias_model": _num(_get(hsc, "bias", "exsitu_frac", "model")),
        "hsc_exsitu_within_0.1_model": _num(_get(hsc, "exsitu_frac_within_0.1", "model")),
    }
    for target in ("exsitu_frac", "lmm_lookback_gyr", "lmm_log_mass"):
        cov = _get(tng_metrics, "model", "calibration", target, "coverage")
        for level in (0.68, 0.9):
            s[f"coverage_{int(level * 100)}_{target}"] = _coverage_at(cov, level)
    ranking = _get(cmp_, "ranking")
    far = max(ranking, key=lambda r: _num(r["mean"]))
    s["farthest_from_hsc"] = far["set"]
    s["ood_ranking"] = [r["set"] for r in sorted(ranking, key=lambda r: -_num(r["mean"]))]
    for dom in DOMAIN_WEIGHTS:
        if dom == "hsc":
            continue
        s[f"ood_frac_{dom}_vs_hsc"] = _num(_get(cmp_, "ood_fraction_above_1", dom, "hsc"))
        s[f"ood_frac_hsc_vs_{dom}"] = _num(_get(cmp_, "ood_fraction_above_1", "hsc", dom))
    diff = ("exsitu_difference_observed_minus_sim", "tng100")
    s["hsc_minus_tng100_exsitu_inferred"] = _num(_get(cmp_, *diff, "inferred"))
    s["hsc_minus_tng100_exsitu_truth"] = _num(_get(cmp_, *diff, "truth"))
    s["hsc_minus_tng100_exsitu_hidden_truth"] = _hidden_truth_shift(out, cfg)
    s.update(domain_figures(out, cfg))
    s.update(oracle_figures(out, cfg))
    return s


def _hidden_truth_shift(out: str, cfg: RunConfig) -> float:
    """Return hsc's true ex-situ fraction minus tng100's at fixed mass (as ``compare`` bins).

    Only a mock survey can give it: hsc's truth as ``validate hsc`` joined it from the hidden
    table, tng100's from its mock catalogue.
    """
    hsc_url = storage.join(out, "validate", "hsc", "predictions.parquet")
    tng_url = storage.join(out, "mock", "tng100")
    if not (storage.exists(hsc_url, cfg.storage) and storage.exists(tng_url, cfg.storage)):
        return float("nan")
    cols = ("log_mstar", "true_exsitu_frac")
    hsc = read_parquet_file(hsc_url, cfg.storage, cols)
    tng = read_catalog(tng_url, cfg.storage, columns=cols)
    values = [
        t.column(c).to_numpy(zero_copy_only=False).astype(float) for t in (hsc, tng) for c in cols
    ]
    diff = exsitu_difference_at_fixed_mass(*values, cfg.evaluate.mass_bins)
    return _num(diff["mean_difference"])


def _coverage_at(cov: dict[str, Any], level: float) -> float:
    """Empirical coverage of the central interval at ``level`` (``calibration.coverage``)."""
    at = {round(float(lv), 4): c for lv, c in zip(cov["levels"], cov["coverage"], strict=True)}
    if round(level, 4) not in at:
        msg = f"coverage has no {level:g} level (levels: {cov['levels']})"
        raise KeyError(msg)
    return _num(at[round(level, 4)])


def _pct(v: float) -> str:
    return "–" if not math.isfinite(v) else f"{100 * v:.1f} %"


def _f(v: float, unit: str = "") -> str:
    return "–" if not math.isfinite(v) else f"{v:.3f}{unit}"


def summary_rows(s: dict[str, Any]) -> list[tuple[str, str, str, str]]:
    """Rows (figure, ergo_ray, reference, what the reference is) of the summary table."""
    rows = [
        (
            "ex-situ fraction: |MAP − truth| ≤ 0.1 (tng100+tng50 test)",
            _pct(s["exsitu_within_0.1_model"]),
            f"{_pct(s['exsitu_within_0.1_baseline'])} / {_pct(PAPER_EXSITU_WITHIN_01)}",
            "mass+redshift baseline / paper (TNG)",
        ),
        (
            "merger mass within 0.5 dex (log M* > 9.5)",
            _pct(s["lmm_mass_within_0.5dex_model"]),
            _pct(s["lmm_mass_within_0.5dex_baseline"]),
            "mass+redshift baseline",
        ),
        (
            "lookback time of last major merger: MAE",
            _f(s["lmm_lookback_mae_model"], " Gyr"),
            _f(s["lmm_lookback_mae_baseline"], " Gyr"),
            "mass+redshift baseline",
        ),
        (
            "ex-situ within 0.1, out-of-TNG test (eagle)",
            _pct(s["eagle_exsitu_within_0.1_model"]),
            f"{_pct(s['eagle_exsitu_within_0.1_baseline'])} / {_pct(s['exsitu_within_0.1_model'])}",
            "mass+redshift baseline on eagle / in-domain (tng test)",
        ),
    ]
    for target in ("exsitu_frac", "lmm_lookback_gyr", "lmm_log_mass"):
        rows.append(
            (
                f"coverage of 68 % / 90 % intervals: {target}",
                f"{_pct(s[f'coverage_68_{target}'])} / {_pct(s[f'coverage_90_{target}'])}",
                "68.0 % / 90.0 %",
                "nominal (±5 points is the goal)",
            )
        )
    ranking = s.get("ood_ranking") or []
    rows.append(
        (
            "domain farthest from hsc (OOD score)",
            str(s.get("farthest_from_hsc", "–")),
            " > ".join(ranking),
            "ranking, farthest first",
        )
    )
    for dom in ("tng100", "tng50", "eagle", "simba"):
        rows.append(
            (
                f"OOD fraction > 1: {dom}→hsc / hsc→{dom}",
                f"{_pct(s[f'ood_frac_{dom}_vs_hsc'])} / {_pct(s[f'ood_frac_hsc_vs_{dom}'])}",
                "5 %",
                "self-score level",
            )
        )
    rows.append(
        (
            "hsc − tng100 inferred ex-situ fraction at fixed mass",
            _f(s["hsc_minus_tng100_exsitu_inferred"]),
            f"{_f(s['hsc_minus_tng100_exsitu_hidden_truth'])} / "
            f"{_f(s['hsc_minus_tng100_exsitu_truth'])}",
            "hidden truth / hsc inferred − tng100 true",
        )
    )
    rows.append(
        (
            "hsc ex-situ bias (MAP − hidden truth)",
            _f(s["hsc_exsitu_bias_model"]),
            "0",
            "an unbiased model",
        )
    )
    rows.extend(domain_rows(s))
    return rows


def _text_table(rows: Sequence[tuple[str, str, str, str]]) -> str:
    head = ("figure", "ergo_ray", "reference", "reference is")
    widths = [max(len(str(r[i])) for r in [head, *rows]) for i in range(4)]
    line = lambda r: "  ".join(str(c).ljust(w) for c, w in zip(r, widths, strict=True))  # noqa: E731
    return "\n".join([line(head), line(tuple("-" * w for w in widths)), *map(line, rows)])


def _training_figure(out: str, cfg: RunConfig) -> bytes | None:
    url = storage.join(out, "nnclr", "metrics.jsonl")
    if not storage.exists(url, cfg.storage):
        return None
    import matplotlib

    matplotlib.use("Agg")
    import matplotlib.pyplot as plt

    from ergo_ray.evaluate.plots import figure_png

    recs = [
        json.loads(line)
        for line in storage.read_bytes(url, cfg.storage).decode().splitlines()
        if line.strip()
    ]
    if not recs:
        return None
    ep = [r.get("epoch", i) for i, r in enumerate(recs)]
    fig, (a1, a2) = plt.subplots(1, 2, figsize=(10, 3.6))
    for key in ("train_loss", "loss", "val_loss"):
        if key in recs[0]:
            a1.plot(ep, [r.get(key) for r in recs], marker="o", label=key)
    a1.set_xlabel("epoch")
    a1.set_ylabel("NT-Xent loss")
    a1.legend()
    for key in sorted(k for k in recs[0] if k.startswith("knn_r2_")):
        a2.plot(ep, [r.get(key) for r in recs], marker="o", label=key.removeprefix("knn_r2_"))
    a2.set_xlabel("epoch")
    a2.set_ylabel("kNN R² on validation")
    a2.set_ylim(-0.1, 1.0)
    a2.legend()
    fig.suptitle("NNCLR training")
    return figure_png(fig)


def write_report(out: str, stages: Sequence[Stage], cfg: RunConfig) -> str:
    """Write ``report.html`` and ``summary.json`` under ``out``; return the summary as text.

    Parameters
    ----------
    out : str
        Demo output URL.
    stages : sequence of Stage
        The stages with their wall times.
    cfg : RunConfig
        Configuration (storage settings, preset name).

    Returns
    -------
    str
        The summary table as plain text (logged at the end of the demo).
    """
    s = summarize(out, cfg)
    rows = summary_rows(s)
    total = sum(st.seconds or 0.0 for st in stages)
    sections = [
        Section(
            "Summary",
            text=[
                "Every figure below is measured on the mock universe, where the truth is known. "
                "The model is trained on tng100+tng50; hsc plays the observed survey (its truth "
                "is hidden from every stage but validation), simba the least realistic "
                "simulation.",
                f"Preset '{cfg.preset}', total wall time {total / 60:.1f} min.",
            ],
            tables=[(("figure", "ergo_ray", "reference", "reference is"), rows)],
        ),
        Section(
            "Stages",
            tables=[
                (
                    ("stage", "wall time [s]"),
                    [(st.name, round(st.seconds or 0.0, 1)) for st in stages],
                )
            ],
        ),
    ]
    stamps = _pngs(storage.join(out, "stamps"), cfg)
    if stamps:
        sections.append(
            Section("Example stamps (g, r, i composites), one row per domain", images=stamps)
        )
    train_png = _training_figure(out, cfg)
    if train_png:
        sections.append(
            Section("Representation learning", images=[("NNCLR loss and kNN R²", train_png)])
        )
    for name, title in (
        ("tng", "Validation on the tng100+tng50 test split"),
        ("eagle", "Out-of-TNG test: eagle"),
        ("hsc", "The observed survey against its hidden truth: hsc"),
    ):
        imgs = _pngs(storage.join(out, "validate", name), cfg)
        if imgs:
            sections.append(Section(title, images=imgs))
    imgs = _pngs(storage.join(out, "compare"), cfg)
    if imgs:
        sections.append(Section("Domain comparison and science figures", images=imgs))
    page = html_report(
        "ergo_ray demo report",
        sections,
        subtitle="ERGO-ML on the built-in mock universe: accuracy, calibration, domain shift",
    )
    storage.write_bytes(storage.join(out, "report.html"), page, cfg.storage)
    storage.write_bytes(
        storage.join(out, "summary.json"),
        json_bytes({**s, "stages": {st.name: st.seconds for st in stages}, "total_seconds": total}),
        cfg.storage,
    )
    return _text_table(rows)
