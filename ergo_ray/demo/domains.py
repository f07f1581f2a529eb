"""What the user faces per validated domain, and how much of the hsc shift is recovered.

For each domain that ``validate`` scored (the tng100+tng50 test split, ``eagle``, and ``hsc``
against its hidden truth): coverage of the 68 % and 90 % central intervals per target, the
PIT Kolmogorov–Smirnov distance, the bias (MAP − truth) and the fraction within ±0.1 in
ex-situ fraction. For the ``hsc`` − ``tng100`` ex-situ difference at fixed mass: the model's,
the truth's and the ``struct_*`` oracle's (mock-universe.md: a gradient-boosted regressor on
every latent the renderer uses, trained on ``tng100``, the ceiling an ideal measurement of the
image reaches), each as a recovered fraction of the true shift; and the oracle's ex-situ bias
on the same ``hsc`` galaxies as the model's.

Everything here reads outputs of finished stages; the hidden ``hsc`` truth is read only
through ``validate hsc``'s predictions (the truth it joined), never from the truth table.
"""

from __future__ import annotations

import json
import math
from typing import Any

import numpy as np

from ergo_ray.config.schema import RunConfig
from ergo_ray.io import storage
from ergo_ray.types import TARGETS

__all__ = ["STATS", "VALIDATED", "domain_figures", "domain_rows", "oracle_figures"]

#: Validation folders of the demo and their labels.
VALIDATED: tuple[tuple[str, str], ...] = (
    ("tng", "tng100+tng50 test"),
    ("eagle", "eagle (truth known)"),
    ("hsc", "hsc (hidden truth)"),
)
#: Figures per domain and target.
STATS: tuple[str, ...] = ("c68", "c90", "pit_ks", "pit_mean", "bias")
_TARGET_LABEL = {
    "exsitu_frac": "ex-situ",
    "lmm_lookback_gyr": "lookback",
    "lmm_log_mass": "merger mass",
}


def _json(url: str, cfg: RunConfig) -> dict[str, Any]:
    if not storage.exists(url, cfg.storage):
        return {}
    return dict(json.loads(storage.read_bytes(url, cfg.storage)))


def _fl(v: Any) -> float:
    """Float of a figure; None (not measured) becomes NaN, shown as "–"."""
    return float("nan") if v is None else float(v)


def domain_figures(out: str, cfg: RunConfig) -> dict[str, float]:
    """Per-domain calibration figures from ``validate/<domain>/metrics.json``.

    Parameters
    ----------
    out : str
        Demo output URL.
    cfg : RunConfig
        Storage settings.

    Returns
    -------
    dict
        Flat figures ``domain_<domain>_<target>_<stat>`` (stat: ``c68``, ``c90``,
        ``pit_ks``, ``pit_mean``, ``bias``) and ``domain_<domain>_exsitu_within_0.1``, for
        the domains validated (a domain without metrics is left out; a figure that could
        not be measured, e.g. the merger targets of a set without mergers, is NaN).
    """
    from ergo_ray.evaluate.validation import interval_figures

    res: dict[str, float] = {}
    for name, _ in VALIDATED:
        model = _json(storage.join(out, "validate", name, "metrics.json"), cfg).get("model")
        if not model:
            continue
        res[f"domain_{name}_exsitu_within_0.1"] = _fl(
            model["targets"]["exsitu_frac"].get("frac_within_0.1"))
        for t in TARGETS:
            fig = interval_figures(model, t)
            for k in STATS:
                res[f"domain_{name}_{t}_{k}"] = _fl(fig.get(k))
    return res


def _diff_at_fixed_mass(m_a: np.ndarray, v_a: np.ndarray, m_b: np.ndarray,
                        v_b: np.ndarray, cfg: RunConfig) -> float:
    from ergo_ray.evaluate.science import exsitu_difference_at_fixed_mass

    diff = exsitu_difference_at_fixed_mass(m_a, v_a, m_b, v_b, cfg.evaluate.mass_bins)
    return _fl(diff["mean_difference"])


def oracle_figures(out: str, cfg: RunConfig) -> dict[str, float]:
    """Score the ``struct_*`` oracle on the demo's galaxies: hsc − tng100 shift and hsc bias.

    The oracle is trained on the ``tng100`` mock catalogue's rows of the train split (on
    ``root_id``, as every stage splits) and predicts ``tng100``'s other rows and every ``hsc``
    galaxy that ``validate hsc`` scored (their ``struct_*`` latents are in the mock
    catalogue, their truth in ``validate/hsc/predictions.parquet``).

    Parameters
    ----------
    out : str
        Demo output URL.
    cfg : RunConfig
        Storage settings and mass bins.

    Returns
    -------
    dict
        ``oracle_hsc_minus_tng100`` (the oracle's shift), ``oracle_hsc_exsitu_bias`` and
        ``model_hsc_exsitu_bias_same`` (the model's MAP bias on the same galaxies); NaN
        when an input is missing.
    """
    nan = {"oracle_hsc_minus_tng100": math.nan, "oracle_hsc_exsitu_bias": math.nan,
           "model_hsc_exsitu_bias_same": math.nan}
    pred_url = storage.join(out, "validate", "hsc", "predictions.parquet")
    tng_url, hsc_url = storage.join(out, "mock", "tng100"), storage.join(out, "mock", "hsc")
    if not all(storage.exists(u, cfg.storage) for u in (pred_url, tng_url, hsc_url)):
        return nan
    from sklearn.ensemble import HistGradientBoostingRegressor

    from ergo_ray.io.catalog import read_catalog, read_parquet_file
    from ergo_ray.preprocess.split import assign_split

    tng = read_catalog(tng_url, cfg.storage).to_pydict()
    hsc = read_catalog(hsc_url, cfg.storage).to_pydict()
    keys = sorted(k for k in tng if k.startswith("struct_") and k in hsc)
    if not keys:
        return nan

    def features(cols: dict[str, list[Any]]) -> np.ndarray:
        names = [*keys, "log_mstar", "redshift", "is_etg"]
        return np.array([[np.nan if v is None else float(v) for v in cols[k]] for k in names],
                        np.float64).T

    x_tng, x_hsc = features(tng), features(hsc)
    y_tng = np.asarray(tng["true_exsitu_frac"], np.float64)
    sc = cfg.split
    split = np.asarray(assign_split([str(r) for r in tng["root_id"]],
                                    (sc.train, sc.val, sc.test), sc.seed), object)
    tr, te = split == "train", split != "train"
    model = HistGradientBoostingRegressor(max_iter=300, learning_rate=0.05, random_state=0)
    model.fit(x_tng[tr], y_tng[tr])
    pred = read_parquet_file(pred_url, cfg.storage, ("object_id", "true_exsitu_frac",
                                                     "exsitu_frac_map", "log_mstar"))
    index = {str(o): i for i, o in enumerate(hsc["object_id"])}
    rows = np.array([index.get(str(o), -1) for o in pred.column("object_id").to_pylist()])
    ok = rows >= 0
    truth = pred.column("true_exsitu_frac").to_numpy(zero_copy_only=False).astype(float)[ok]
    model_map = pred.column("exsitu_frac_map").to_numpy(zero_copy_only=False).astype(float)[ok]
    oracle_hsc = model.predict(x_hsc[rows[ok]])
    m_hsc = x_hsc[rows[ok], len(keys)]
    return {
        "oracle_hsc_minus_tng100": _diff_at_fixed_mass(
            m_hsc, oracle_hsc, x_tng[te, len(keys)], model.predict(x_tng[te]), cfg),
        "oracle_hsc_exsitu_bias": float(np.nanmean(oracle_hsc - truth)),
        "model_hsc_exsitu_bias_same": float(np.nanmean(model_map - truth)),
    }


def _pct(v: float) -> str:
    return "–" if not math.isfinite(v) else f"{100 * v:.1f} %"


def _f(v: float) -> str:
    return "–" if not math.isfinite(v) else f"{v:+.3f}"


def domain_rows(s: dict[str, Any]) -> list[tuple[str, str, str, str]]:
    """Summary-table rows: per domain and target, and the recovered hsc shift.

    Parameters
    ----------
    s : dict
        The demo's summary: the figures of :func:`domain_figures`, of
        :func:`oracle_figures` and ``hsc_minus_tng100_exsitu_inferred`` / ``…_hidden_truth``.

    Returns
    -------
    list of tuple
        (figure, ergo_ray, reference, what the reference is).
    """
    shift = {"inferred": _fl(s.get("hsc_minus_tng100_exsitu_inferred")),
             "truth": _fl(s.get("hsc_minus_tng100_exsitu_hidden_truth")),
             "oracle": _fl(s.get("oracle_hsc_minus_tng100")),
             "oracle_bias": _fl(s.get("oracle_hsc_exsitu_bias")),
             "model_bias": _fl(s.get("model_hsc_exsitu_bias_same"))}
    rows: list[tuple[str, str, str, str]] = []
    for name, label in VALIDATED:
        if f"domain_{name}_exsitu_within_0.1" not in s:
            continue
        f = {t: {k: _fl(s.get(f"domain_{name}_{t}_{k}")) for k in STATS} for t in TARGETS}
        for t in TARGETS:
            rows.append((f"{label}: {_TARGET_LABEL[t]} coverage 68 % / 90 %",
                         f"{_pct(f[t]['c68'])} / {_pct(f[t]['c90'])}", "68.0 % / 90.0 %",
                         "nominal (±5 points is the goal)"))
        ex = f["exsitu_frac"]
        ks = "–" if not math.isfinite(ex["pit_ks"]) else f"{ex['pit_ks']:.3f}"
        within = _pct(_fl(s.get(f"domain_{name}_exsitu_within_0.1")))
        rows.append((f"{label}: ex-situ PIT KS / bias / within ±0.1",
                     f"{ks} / {_f(ex['bias'])} / {within}", "≤ 0.10 / 0 / –",
                     "calibrated and unbiased"))
    truth = shift["truth"]

    def frac(v: float) -> str:
        ok = math.isfinite(v) and math.isfinite(truth) and truth != 0
        return _pct(v / truth) if ok else "–"

    rows.append(("hsc − tng100 ex-situ at fixed mass: recovered fraction of the true shift",
                 f"{frac(shift['inferred'])} "
                 f"({_f(shift['inferred'])})",
                 f"{frac(shift['oracle'])} ({_f(shift['oracle'])}) "
                 f"/ 100 % ({_f(truth)})",
                 "struct_* oracle / hidden truth"))
    rows.append(("hsc ex-situ bias (MAP − hidden truth), same galaxies",
                 _f(shift["model_bias"]), _f(shift["oracle_bias"]),
                 "struct_* oracle (tng100-trained)"))
    return rows
