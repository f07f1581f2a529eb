"""``compare``: OOD scores and UMAP/KDE between sets, and the observed set's science figures.

:func:`compare_sets` takes the sets' representations (and, for the science figures,
posterior samples), computes the OOD table of every ordered pair (method.md §7), a joint
UMAP, and for the observed set the ex-situ fraction against stellar mass and size
(method.md §8) with the observed − simulation difference at fixed mass;
:func:`write_comparison` writes ``compare.json``, ``summary.json``, ``ood_table.csv``,
``ood_table.md``, ``umap.parquet``, the PNG figures and ``report.html``.
"""

from __future__ import annotations

import io
import logging
from collections.abc import Mapping
from dataclasses import dataclass, field
from typing import TYPE_CHECKING, Any

import numpy as np

from ergo_ray.evaluate import compare_plots, plots, science
from ergo_ray.evaluate.inputs import EvalSet
from ergo_ray.evaluate.ood import (
    OodResult,
    fraction_table_markdown,
    ood_scores,
    pair_ranking,
)
from ergo_ray.evaluate.report import Section, html_report, json_bytes, write_files
from ergo_ray.evaluate.set_posterior import SetPosterior, posterior_for_set
from ergo_ray.evaluate.umap_embedding import joint_umap
from ergo_ray.io import storage as st

if TYPE_CHECKING:
    from ergo_ray.config.schema import RunConfig, StorageConfig

__all__ = ["ComparisonResult", "compare_sets", "write_comparison"]

log = logging.getLogger("ergo_ray")


@dataclass
class ComparisonResult:
    """Everything ``compare`` computed.

    Attributes
    ----------
    data : dict
        The content of ``compare.json``.
    ood : OodResult
        The pairwise scores.
    embedding : dict
        Set name → (n, 2) UMAP coordinates (empty when UMAP was skipped).
    figures : dict
        File name → PNG bytes.
    """

    data: dict[str, Any]
    ood: OodResult
    embedding: dict[str, np.ndarray] = field(default_factory=dict)
    figures: dict[str, bytes] = field(default_factory=dict)


def _science(observed: str, sets: Mapping[str, EvalSet], posts: Mapping[str, SetPosterior],
             edges: tuple[float, ...], ood_obs: np.ndarray | None, ood_max: float | None,
             figures: dict[str, bytes]) -> dict[str, Any]:
    es, post = sets[observed], posts[observed]
    cols = {k: v[post.keep] for k, v in es.columns.items()}
    n_all = int(post.keep.sum())
    sel = np.ones(n_all, dtype=bool)
    cut: dict[str, Any] = {"ood_max": ood_max, "n_before": n_all}
    if ood_max is not None and ood_obs is not None:
        sel = np.asarray(ood_obs) <= ood_max
        cut["n_after"] = int(sel.sum())
        log.info("OOD cut ≤ %g keeps %d of %d %s galaxies", ood_max, sel.sum(), n_all, observed)
    else:
        cut["n_after"] = n_all
    ex = post.samples[sel, :, 0].astype(np.float64)
    mass = np.asarray(cols.get("log_mstar", np.full(n_all, np.nan)), np.float64)[sel]
    z = np.asarray(cols.get("redshift", np.full(n_all, np.nan)), np.float64)[sel]
    r90 = np.asarray(cols.get("r90_px", np.full(n_all, np.nan)), np.float64)[sel]
    size = science.physical_size_kpc(r90, z)
    obs_mean = np.nanmean(ex, axis=1)
    sims_truth: dict[str, list[dict[str, Any]]] = {}
    sims_inferred: dict[str, list[dict[str, Any]]] = {}
    diffs: dict[str, Any] = {}
    for name, other in sets.items():
        if name == observed or name not in posts:
            continue
        p = posts[name]
        om = other.column("log_mstar")[p.keep]
        inferred = np.nanmean(p.samples[:, :, 0].astype(np.float64), axis=1)
        sims_inferred[name] = science.mass_bin_ranges(om, inferred, edges)
        d: dict[str, Any] = {"inferred": science.exsitu_difference_at_fixed_mass(
            mass, obs_mean, om, inferred, edges)}
        truth = other.column("true_exsitu_frac")[p.keep]
        if np.isfinite(truth).any():
            sims_truth[name] = science.mass_bin_ranges(om, truth, edges)
            d["truth"] = science.exsitu_difference_at_fixed_mass(mass, obs_mean, om, truth, edges)
        diffs[name] = d
    shown = {f"{k} (truth)": v for k, v in sims_truth.items()}
    shown.update({f"{k} (inferred)": v for k, v in sims_inferred.items() if k not in sims_truth})
    figures["exsitu_vs_mass.png"] = plots.figure_png(
        science.exsitu_vs_mass_figure(observed, mass, ex, edges, shown))
    figures["exsitu_vs_size.png"] = plots.figure_png(
        science.exsitu_vs_size_figure(observed, size, ex, mass))
    figures["size_mass_hexbin.png"] = plots.figure_png(science.size_mass_hexbin_figure(
        mass, size, post.summary["exsitu_frac_map"][sel], post.summary["exsitu_frac_std"][sel]))
    return {
        "ood_cut": cut,
        "n_with_mass": int(np.isfinite(mass).sum()),
        "n_with_size": int(np.isfinite(size).sum()),
        "observed_by_mass": science.mass_bin_ranges(mass, ex, edges),
        "sims_truth_by_mass": sims_truth,
        "sims_inferred_by_mass": sims_inferred,
        "exsitu_difference": diffs,
        "median_posterior_std": float(np.nanmedian(post.summary["exsitu_frac_std"][sel]))
        if sel.any() else float("nan"),
    }


def _representations(bundle: Any, sets: Mapping[str, EvalSet]) -> dict[str, np.ndarray]:
    """Return the finite representations of each set (from its images if need be)."""
    reps: dict[str, np.ndarray] = {}
    for name, es in sets.items():
        if es.reps is None:
            es.reps = np.asarray(bundle.represent(es.images), np.float32)
            es.images = None     # the representations are all that is needed from here on
        r = np.asarray(es.reps, np.float32)
        reps[name] = r[np.isfinite(r).all(axis=1)]
        log.info("compare: %d representations of %s", len(reps[name]), name)
    return reps


def _umap(reps: Mapping[str, np.ndarray], cfg: RunConfig, observed: str | None,
          data: dict[str, Any], figures: dict[str, bytes]) -> dict[str, np.ndarray]:
    """Embed the sets jointly; add the figure to ``figures`` and the settings to ``data``."""
    ev = cfg.evaluate
    embedding = joint_umap(reps, ev.umap_neighbors, ev.umap_min_dist, ev.umap_max_points,
                           seed=cfg.seed, fit_points=ev.umap_fit_points,
                           n_epochs=ev.umap_epochs)
    figures["umap_kde.png"] = plots.figure_png(
        compare_plots.umap_kde_figure(embedding, observed))
    data["umap"] = {"n_neighbors": ev.umap_neighbors, "min_dist": ev.umap_min_dist,
                    "fit_points": ev.umap_fit_points, "epochs": ev.umap_epochs,
                    "points": {k: len(v) for k, v in embedding.items()}}
    return embedding


def compare_sets(
    bundle: Any,
    sets: Mapping[str, EvalSet],
    cfg: RunConfig,
    observed: str | None = None,
    ood_max: float | None = None,
    n_samples: int | None = None,
    use_umap: bool = True,
) -> ComparisonResult:
    """Compare sets in representation space and, for the observed set, in ex-situ fraction.

    Parameters
    ----------
    bundle : ergo_ray.infer.bundle.ModelBundle
        The model (its encoder gives the representations).
    sets : mapping of str to EvalSet
        The sets, by name.
    cfg : RunConfig
        ``ood`` (k, metric, quantile, max_per_set, seed), ``evaluate`` (UMAP, mass bins),
        ``evaluate.compare_samples`` and ``seed``.
    observed : str, optional
        The observed set: UMAP panels against it, the OOD ranking and science figures.
    ood_max : float, optional
        Keep only observed galaxies with the bundle's OOD score ≤ this for the science.
    n_samples : int, optional
        Posterior samples per galaxy (default ``cfg.evaluate.compare_samples``).
    use_umap : bool
        Compute the joint UMAP.

    Returns
    -------
    ComparisonResult
        Tables, JSON content and figures.
    """
    reps = _representations(bundle, sets)
    oc = cfg.ood
    res = ood_scores(reps, k=oc.k, metric=oc.metric, quantile=oc.quantile,
                     max_per_set=oc.max_per_set, seed=oc.seed)
    ood_json = res.to_json(1.0)
    data: dict[str, Any] = {
        "model_id": getattr(bundle, "model_id", None),
        "sets": {n: {"inputs": [st.redact(u) for u in es.sources], "n": len(es),
                     "n_representations": len(reps[n])} for n, es in sets.items()},
        "observed": observed,
        "ood": ood_json,
        "ood_table_markdown": fraction_table_markdown(res),
    }
    figures: dict[str, bytes] = {"ood_histograms.png": plots.figure_png(
        compare_plots.ood_histogram_figure(res.scores, res.names))}
    if observed is not None:
        data["ranking"] = pair_ranking(res, observed)
    embedding: dict[str, np.ndarray] = {}
    if use_umap:
        embedding = _umap(reps, cfg, observed, data, figures)
    if observed is not None:
        n = int(cfg.evaluate.compare_samples if n_samples is None else n_samples)
        posts = {name: posterior_for_set(bundle, es, n, cfg.seed) for name, es in sets.items()}
        ood_obs = None
        if ood_max is not None:
            ood_obs = np.asarray(bundle.ood_score(posts[observed].reps), np.float64)
        data["science"] = _science(observed, sets, posts, tuple(cfg.evaluate.mass_bins),
                                   ood_obs, ood_max, figures)
        data["n_samples"] = n
    return ComparisonResult(data, res, embedding, figures)


def _headline(data: Mapping[str, Any]) -> dict[str, Any]:
    out: dict[str, Any] = {
        "model_id": data["model_id"],
        "observed": data["observed"],
        "ood_fraction_above_1": data["ood"]["table"],
        "ood_table_markdown": data["ood_table_markdown"],
    }
    if "ranking" in data:
        out["ranking"] = [{"set": r["set"], "rank": r["rank"], "mean": r["mean"]}
                          for r in data["ranking"]]
    sci = data.get("science")
    if sci:
        out["exsitu_difference_observed_minus_sim"] = {
            name: {kind: d[kind]["mean_difference"] for kind in ("inferred", "truth") if kind in d}
            for name, d in sci["exsitu_difference"].items()}
        out["ood_cut"] = sci["ood_cut"]
    return out


def _csv(res: OodResult) -> bytes:
    frac = res.fraction_above(1.0)
    lines = ["query,reference,label,fraction_above_1,median_score,n"]
    for (a, b), f in frac.items():
        lines.append(f"{a},{b},{a}-{b},{f:.6f},{float(np.median(res.scores[(a, b)])):.6f},"
                     f"{res.sizes[(a, b)]}")
    return ("\n".join(lines) + "\n").encode()


def _umap_parquet(embedding: Mapping[str, np.ndarray]) -> bytes:
    import pyarrow as pa
    import pyarrow.parquet as pq

    names = [n for n, v in embedding.items() for _ in range(len(v))]
    xy = np.concatenate(list(embedding.values())) if embedding else np.zeros((0, 2))
    buf = io.BytesIO()
    pq.write_table(pa.table({"set": pa.array(names, pa.string()), "umap_x": xy[:, 0],
                             "umap_y": xy[:, 1]}), buf)
    return buf.getvalue()


def write_comparison(out: str, res: ComparisonResult, storage: StorageConfig | None = None
                     ) -> list[str]:
    """Write every output of ``compare`` under ``out``.

    Parameters
    ----------
    out : str
        Output folder URL.
    res : ComparisonResult
        From :func:`compare_sets`.
    storage : StorageConfig, optional
        Storage settings.

    Returns
    -------
    list of str
        Names of the files written.
    """
    d = res.data
    files: dict[str, bytes] = {
        "compare.json": json_bytes(d),
        "summary.json": json_bytes(_headline(d)),
        "ood_table.csv": _csv(res.ood),
        "ood_table.md": d["ood_table_markdown"].encode(),
        **res.figures,
    }
    if res.embedding:
        files["umap.parquet"] = _umap_parquet(res.embedding)
    files["report.html"] = html_report("ergo_ray comparison", _sections(res),
                                       subtitle=f"model {d['model_id']} · sets "
                                                f"{', '.join(d['sets'])}")
    return write_files(out, files, storage)


def _sections(res: ComparisonResult) -> list[Section]:
    d = res.data
    names = res.ood.names
    table = d["ood"]["table"]
    rows = [[a, *[f"{100 * table[a][b]:.1f} %" for b in names]] for a in names]
    p = d["ood"]["params"]
    secs = [Section(
        "Out-of-domain scores (method.md §7)",
        [f"Fraction of each query set's galaxies with scaled score > 1 against each reference "
         f"set (k={p['k']}, {p['metric']} distance, equal-size subsamples of at most "
         f"{p['max_per_set']}, scaled by the {p['quantile']:.0%} quantile of the query set's "
         "self-scores). 'A-B' means A scored against B; the diagonal is 5 % by construction."],
        [(["query \\ reference", *names], rows)],
        [("OOD score distributions", res.figures["ood_histograms.png"])])]
    if "ranking" in d:
        secs[0].tables.append((["rank", "set", f"{d['observed']} → set", f"set → {d['observed']}",
                                "mean"],
                               [[r["rank"], r["set"], r["observed_to_set"],
                                 r["set_to_observed"], r["mean"]] for r in d["ranking"]]))
    if "umap_kde.png" in res.figures:
        secs.append(Section("Joint UMAP with KDE isodensity contours",
                            ["Contours enclose 50, 80 and 95 % of each set; dashed: the "
                             "observed set."], images=[("UMAP/KDE", res.figures["umap_kde.png"])]))
    sci = d.get("science")
    if sci:
        diff_rows = [[name, dd["inferred"]["mean_difference"], dd["inferred"]["stderr"],
                      (dd.get("truth") or {}).get("mean_difference", float("nan")),
                      dd["inferred"]["n_bins"]] for name, dd in sci["exsitu_difference"].items()]
        cut = sci["ood_cut"]
        secs.append(Section(
            f"Science: {d['observed']} (method.md §8)",
            [f"{cut['n_after']} of {cut['n_before']} galaxies used"
             + (f" (OOD score ≤ {cut['ood_max']:g})" if cut["ood_max"] is not None else "")
             + f"; {sci['n_with_mass']} with stellar mass, {sci['n_with_size']} with size.",
             "Mean ex-situ fraction difference, observed − simulation, at fixed stellar mass "
             "(per-bin differences of the mean posterior mean, weighted by the observed counts)."],
            [(["simulation", "Δ vs inferred", "± stderr", "Δ vs truth", "mass bins"], diff_rows)],
            [("ex-situ fraction vs stellar mass", res.figures["exsitu_vs_mass.png"]),
             ("ex-situ fraction vs physical size", res.figures["exsitu_vs_size.png"]),
             ("size–mass plane", res.figures["size_mass_hexbin.png"])]))
    return secs
