"""Benchmark: the mock-universe generator (throughput, oracle vs mass-only, crop fit).

Figures, all measured in one run on the same machine:

1. **Throughput**, galaxies per second per core at 128 px and 64 px (3 bands, noise, field
   objects), single process, ``OMP_NUM_THREADS=1``, after a warm-up that fills GalSim's
   Sérsic caches. Per core = per CPU-second of this process (``time.process_time``), so the
   figure does not depend on what else runs on a shared machine; the wall-clock rate is
   printed beside it. Goal ≥ 25 galaxies/s/core at 128 px.
2. **Oracle and floor** for the ex-situ fraction (mock-universe.md "How much the image
   knows"): a ``HistGradientBoostingRegressor`` on every ``struct_*`` latent plus log M★,
   z and the type, trained on one half of the tng100 (balanced) galaxies and scored on the
   other half, beside the same regressor on log M★ and z only. Figures: RMSE and fraction
   within ±0.1 of the truth. Target oracle RMSE ≈ 0.07–0.10. Both regressors, trained on
   tng100, are also applied to ``hsc`` galaxies: the ``hsc`` − tng100 ex-situ difference at
   fixed mass that they infer, beside the true one, is the part of ``hsc``'s documented
   shift that its images can show at best (and, for mass and z alone, ~0).
3. **Measured sizes**: the same regressor on what ``prepare`` measures on rendered 96-px
   stamps (the ``local`` preset's), log M★, z and the Petrosian sizes in kpc and the
   concentration (the cINN's observables), trained on rendered tng100 galaxies and applied
   to rendered ``hsc`` ones: the part of the shift that these measurements of the images
   recover, between the floor and the oracle.
4. **Crop fit**: fraction of galaxies whose 4 × R90 crop (R90 measured by
   :func:`ergo_ray.preprocess.pipeline.prepare_image` on the noisy r band, as ``prepare``
   does) fits inside the stamp, at 64 and 128 px.

Run: ``python bench/bench_mock.py [--quick] [--only throughput|oracle|measured|cropfit]``.
"""

from __future__ import annotations

import argparse
import os
import time

os.environ.setdefault("OMP_NUM_THREADS", "1")
os.environ.setdefault("OPENBLAS_NUM_THREADS", "1")

import numpy as np

GOAL_RATE = 25.0
#: log M★ bins of the hsc − tng100 comparison (0.5 dex, as ``compare`` bins).
SHIFT_MASS_EDGES = (9.5, 10.0, 10.5, 11.0, 11.5, 12.0)


def throughput(stamp_px: int, n: int, warm: int, domain: str = "tng100") -> tuple[float, float]:
    """Return (galaxies per CPU-second, galaxies per wall-second) rendering ``n`` stamps."""
    from ergo_ray.mock import mock_object

    for i in range(warm):
        mock_object(domain, 99, i, 0, stamp_px)
    c0, w0 = time.process_time(), time.perf_counter()
    for i in range(n):
        mock_object(domain, 0, i, 0, stamp_px)
    return n / (time.process_time() - c0), n / (time.perf_counter() - w0)


def _regressor():  # type: ignore[no-untyped-def]
    """The regressor of every row here: gradient-boosted trees, fixed settings and seed."""
    from sklearn.ensemble import HistGradientBoostingRegressor

    return HistGradientBoostingRegressor(max_iter=300, learning_rate=0.05, random_state=0)


def _oracle_features(rows: list[dict]) -> np.ndarray:
    """(N, F): every ``struct_*`` latent, then log M★, z and the type, per mock row."""
    keys = sorted(k for k in rows[0] if k.startswith("struct_"))
    return np.array([[r[k] for k in keys] + [r["log_mstar"], r["redshift"], float(r["is_etg"])]
                     for r in rows])


def oracle(n: int, domain: str = "tng100", seed: int = 0) -> dict[str, float]:
    """Oracle (all struct_* + mass, z, type) vs mass+z-only regressors of f_ex.

    Parameters
    ----------
    n : int
        Galaxies (half train, half test; split on the index, i.e. on root_id).
    domain : str
        Mock domain.
    seed : int
        Survey seed.

    Returns
    -------
    dict
        ``oracle_rmse``, ``oracle_within``, ``mass_rmse``, ``mass_within``; and the
        ``hsc`` − ``domain`` ex-situ difference at fixed mass that each regressor, trained on
        ``domain``, infers (``oracle_hsc_shift``, ``mass_hsc_shift``) beside the true one
        (``truth_hsc_shift``): how much of ``hsc``'s shift an ideal measurement can see.
    """
    from ergo_ray.evaluate.science import exsitu_difference_at_fixed_mass
    from ergo_ray.mock import draw_galaxy

    def features(rows: list[dict]) -> dict[str, np.ndarray]:
        return {
            "oracle": _oracle_features(rows),
            "mass": np.array([[r["log_mstar"], r["redshift"]] for r in rows]),
        }

    rows = [draw_galaxy(domain, seed, i).row(0) for i in range(n)]
    half = n // 2
    hsc = [draw_galaxy("hsc", seed, i).row(0) for i in range(half)]
    x, x_hsc = features(rows), features(hsc)
    y = np.array([r["true_exsitu_frac"] for r in rows])
    y_hsc = np.array([r["true_exsitu_frac"] for r in hsc])
    m_test, m_hsc = x["mass"][half:, 0], x_hsc["mass"][:, 0]

    def shift(hsc_values: np.ndarray, ref_values: np.ndarray) -> float:
        return exsitu_difference_at_fixed_mass(
            m_hsc, hsc_values, m_test, ref_values, SHIFT_MASS_EDGES
        )["mean_difference"]

    out: dict[str, float] = {"truth_hsc_shift": shift(y_hsc, y[half:])}
    for name in ("oracle", "mass"):
        model = _regressor().fit(x[name][:half], y[:half])
        pred = model.predict(x[name][half:])
        err = pred - y[half:]
        out[f"{name}_rmse"] = float(np.sqrt(np.mean(err**2)))
        out[f"{name}_within"] = float(np.mean(np.abs(err) <= 0.1))
        out[f"{name}_hsc_shift"] = shift(model.predict(x_hsc[name]), pred)
    return out


def measured(n: int, stamp_px: int = 96, seed: int = 0) -> dict[str, float]:
    """Regressor on measured sizes vs the oracle, on the same rendered galaxies.

    Parameters
    ----------
    n : int
        Rendered tng100 galaxies (half train, half test); n / 2 rendered ``hsc`` galaxies.
    stamp_px : int
        Stamp size.
    seed : int
        Survey seed.

    Returns
    -------
    dict
        ``truth_hsc_shift`` and, for ``measured`` (M, z, Petrosian sizes, concentration) and
        ``oracle`` (struct_* + M, z, type), the inferred ``*_hsc_shift`` and ``*_within``.
    """
    from ergo_ray.errors import BadObjectError
    from ergo_ray.evaluate.science import exsitu_difference_at_fixed_mass
    from ergo_ray.mock import mock_object
    from ergo_ray.models.observables import observable_values
    from ergo_ray.preprocess.pipeline import prepare_image

    sizes = ("log_r50_kpc", "log_r90_kpc", "concentration")

    def render(domain: str, count: int) -> tuple[np.ndarray, np.ndarray, np.ndarray]:
        rows, radii = [], []
        for i in range(count):
            row, cut = mock_object(domain, seed, i, 0, stamp_px)
            try:
                radii.append(prepare_image(cut, size=32)[1])
            except BadObjectError:
                continue
            rows.append(row)
        col = lambda src, k: np.array([r[k] for r in src], float)  # noqa: E731
        obs = observable_values(sizes, {"r50_px": col(radii, "r50_px"),
                                        "r90_px": col(radii, "r90_px"),
                                        "redshift": col(rows, "redshift")})
        meas = np.column_stack([col(rows, "log_mstar"), col(rows, "redshift"),
                                *(obs[k] for k in sizes)])
        return meas, _oracle_features(rows), col(rows, "true_exsitu_frac")

    m_ref, o_ref, y = render("tng100", n)
    m_hsc, o_hsc, y_hsc = render("hsc", n // 2)
    half = len(y) // 2

    def shift(hsc_values: np.ndarray, ref_values: np.ndarray) -> float:
        return exsitu_difference_at_fixed_mass(
            m_hsc[:, 0], hsc_values, m_ref[half:, 0], ref_values, SHIFT_MASS_EDGES
        )["mean_difference"]

    out = {"truth_hsc_shift": shift(y_hsc, y[half:])}
    for name, x, x_hsc in (("measured", m_ref, m_hsc), ("oracle", o_ref, o_hsc)):
        model = _regressor().fit(x[:half], y[:half])
        pred = model.predict(x[half:])
        out[f"{name}_within"] = float(np.mean(np.abs(pred - y[half:]) <= 0.1))
        out[f"{name}_hsc_shift"] = shift(model.predict(x_hsc), pred)
    return out


def crop_fit(stamp_px: int, n: int, domain: str = "tng100") -> tuple[float, float]:
    """Fraction of stamps whose 4 × R90 crop fits (and the fraction whose Petrosian fit failed)."""
    from ergo_ray.errors import BadObjectError
    from ergo_ray.mock import mock_object
    from ergo_ray.preprocess.pipeline import prepare_image

    fits, failed = 0, 0
    for i in range(n):
        _, cut = mock_object(domain, 0, i, 0, stamp_px)
        try:
            _, radii = prepare_image(cut, size=32)
        except BadObjectError:
            failed += 1
            continue
        fits += 4 * radii["r90_px"] <= stamp_px
    return fits / n, failed / n


def run(quick: bool, only: str | None = None) -> list[dict]:
    """Measure the generator's figures.

    Parameters
    ----------
    quick : bool
        Small sizes (smoke run).
    only : str, optional
        ``throughput``, ``oracle``, ``measured`` or ``cropfit``.

    Returns
    -------
    list of dict
        Rows ``{"figure", "value", "unit", "goal", "peer", "ratio"}``.
    """
    rows: list[dict] = []
    if only in (None, "throughput"):
        n, warm = (40, 40) if quick else (300, 150)
        for px in (128, 64):
            cpu, wall = throughput(px, n, warm)
            rows.append(
                {
                    "figure": f"mock render {px} px, 3 bands (galaxies/s/core)",
                    "value": cpu,
                    "unit": "gal/s/core",
                    "goal": ">= 25 at 128 px",
                    "peer": GOAL_RATE,
                    "ratio": cpu / GOAL_RATE,
                }
            )
            rows.append(
                {
                    "figure": f"mock render {px} px, wall clock on this (shared) machine",
                    "value": wall,
                    "unit": "gal/s",
                    "goal": "info",
                    "peer": None,
                    "ratio": None,
                }
            )
    if only in (None, "oracle"):
        o = oracle(4000 if quick else 20000)
        rows.append(
            {
                "figure": "f_ex oracle (struct_* + M, z) RMSE",
                "value": o["oracle_rmse"],
                "unit": "",
                "goal": "0.07-0.10",
                "peer": o["mass_rmse"],
                "ratio": o["oracle_rmse"] / o["mass_rmse"],
            }
        )
        rows.append(
            {
                "figure": "f_ex oracle fraction within ±0.1",
                "value": o["oracle_within"],
                "unit": "",
                "goal": "> mass-only",
                "peer": o["mass_within"],
                "ratio": o["oracle_within"] / o["mass_within"],
            }
        )
        rows.append(
            {
                "figure": "f_ex mass+z-only RMSE (floor)",
                "value": o["mass_rmse"],
                "unit": "",
                "goal": "info",
                "peer": None,
                "ratio": None,
            }
        )
        rows.append(
            {
                "figure": "hsc - tng100 f_ex at fixed mass, inferred by the oracle",
                "value": o["oracle_hsc_shift"],
                "unit": "",
                "goal": "< 0 (truth: peer)",
                "peer": o["truth_hsc_shift"],
                "ratio": o["oracle_hsc_shift"] / o["truth_hsc_shift"],
            }
        )
        rows.append(
            {
                "figure": "hsc - tng100 f_ex at fixed mass, inferred from M, z only",
                "value": o["mass_hsc_shift"],
                "unit": "",
                "goal": "info (~0)",
                "peer": o["truth_hsc_shift"],
                "ratio": o["mass_hsc_shift"] / o["truth_hsc_shift"],
            }
        )
    if only in (None, "measured"):
        o = measured(300 if quick else 6000)
        truth = o["truth_hsc_shift"]
        for name, label in (("measured", "M, z and the measured Petrosian sizes"),
                            ("oracle", "the oracle on the same galaxies")):
            rows.append(
                {
                    "figure": f"hsc - tng100 f_ex at fixed mass, from {label} "
                              f"(rendered 96 px; within ±0.1 on tng100: "
                              f"{o[f'{name}_within']:.2f})",
                    "value": o[f"{name}_hsc_shift"],
                    "unit": "",
                    "goal": "info: what the images can show",
                    "peer": truth,
                    "ratio": o[f"{name}_hsc_shift"] / truth,
                }
            )
    if only in (None, "cropfit"):
        n = 40 if quick else 300
        for px in (64, 96, 128):
            frac, fail = crop_fit(px, n)
            rows.append(
                {
                    "figure": f"4xR90 crop fits in a {px}-px stamp (tng100 balanced)",
                    "value": frac,
                    "unit": "fraction",
                    "goal": ">= 0.95 at 128 px",
                    "peer": None,
                    "ratio": None,
                }
            )
            rows.append(
                {
                    "figure": f"Petrosian failures at {px} px",
                    "value": fail,
                    "unit": "fraction",
                    "goal": "small",
                    "peer": None,
                    "ratio": None,
                }
            )
    return rows


def main() -> None:
    p = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    p.add_argument("--quick", action="store_true", help="small smoke run")
    p.add_argument("--only", choices=("throughput", "oracle", "measured", "cropfit"),
                   default=None)
    args = p.parse_args()
    for r in run(args.quick, args.only):
        peer = "" if r["peer"] is None else f"   peer {r['peer']:.4g}"
        ratio = "" if r["ratio"] is None else f"   ratio {r['ratio']:.3f}"
        print(f"{r['figure']}\n    {r['value']:.4g} {r['unit']}{peer}{ratio}   goal: {r['goal']}")


if __name__ == "__main__":
    main()
