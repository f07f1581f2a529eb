"""Population model of the mock universe: relations, merger incidence, domain shifts."""

from __future__ import annotations

import math

import numpy as np
import pytest

from ergo_ray.errors import ConfigError
from ergo_ray.io.schemas import CATALOG_COLUMNS
from ergo_ray.mock import draw_galaxy
from ergo_ray.mock.population import (
    DOMAIN_SHIFTS,
    cosmology,
    f_exsitu_median,
    major_merger_rate,
)

N_REF = 5000


def _logit(p):
    p = np.clip(np.asarray(p, dtype=float), 1e-6, 1 - 1e-6)
    return np.log(p / (1 - p))


def _table(domain: str, n: int, mode: str = "balanced") -> dict[str, np.ndarray]:
    rows = [draw_galaxy(domain, 0, i, mode).row(0) for i in range(n)]
    return {k: np.array([r[k] for r in rows]) for k in rows[0]}


@pytest.fixture(scope="module")
def tng100() -> dict[str, np.ndarray]:
    return _table("tng100", N_REF)


def test_row_has_contract_columns_and_ids():
    row = draw_galaxy("eagle", 7, 42).row(2)
    for col in CATALOG_COLUMNS:
        assert col in row, col
    assert row["object_id"] == "eagle-7-0000042-p2"
    assert row["root_id"] == "eagle-7-0000042"
    assert row["domain"] == "eagle" and row["projection"] == 2
    assert 72 <= row["snap"] <= 91
    assert any(k.startswith("struct_") for k in row)
    for key in (
        "struct_re_arcsec",
        "struct_sersic_n",
        "struct_halo_frac",
        "struct_tidal_flux",
        "struct_companion_flux",
        "struct_psf_fwhm_i",
        "i_mag",
        "ra",
        "dec",
        "is_etg",
    ):
        assert key in row, key
    assert all(isinstance(v, float) for k, v in row.items() if k.startswith("struct_"))


def test_population_is_deterministic_and_index_dependent():
    a = draw_galaxy("tng100", 3, 11).row(1)
    b = draw_galaxy("tng100", 3, 11).row(1)
    c = draw_galaxy("tng100", 3, 12).row(1)
    assert a == b or all(
        (x == y) or (isinstance(x, float) and math.isnan(x) and math.isnan(y))
        for x, y in zip(a.values(), b.values(), strict=True)
    )
    assert a["true_exsitu_frac"] != c["true_exsitu_frac"]
    assert draw_galaxy("tng100", 4, 11).row(1)["log_mstar"] != a["log_mstar"]


def test_projections_share_truth_and_differ_in_orientation():
    gal = draw_galaxy("tng100", 0, 5)
    rows = [gal.row(p) for p in range(4)]
    intrinsic = [
        "redshift",
        "log_mstar",
        "true_exsitu_frac",
        "true_lmm_lookback_gyr",
        "true_lmm_log_mass",
        "i_mag",
        "struct_re_arcsec",
        "struct_sersic_n",
        "struct_halo_frac",
        "root_id",
    ]
    for key in intrinsic:
        vals = [r[key] for r in rows]
        assert all(v == vals[0] or (v != v and vals[0] != vals[0]) for v in vals), key
    assert len({r["struct_pa_deg"] for r in rows}) == 4
    assert len({r["object_id"] for r in rows}) == 4
    with pytest.raises(ConfigError):
        gal.row(4)


def test_unknown_domain_or_mode_is_a_config_error():
    with pytest.raises(ConfigError, match="nosuch"):
        draw_galaxy("nosuch", 0, 0)
    with pytest.raises(ConfigError, match="mass_mode"):
        draw_galaxy("tng100", 0, 0, "weird")


def test_cosmology_matches_tng_table():
    # research notes §2.5 / §4.1 (TNG cosmology)
    c = cosmology(0.3999)
    assert c["lookback_gyr"] == pytest.approx(4.414, abs=0.01)
    assert cosmology(0.2)["kpc_per_arcsec"] == pytest.approx(3.405, rel=0.01)
    assert cosmology(0.4)["dist_mod"] == pytest.approx(41.75, abs=0.03)
    assert cosmology(0.0994)["lookback_gyr"] == pytest.approx(1.336, abs=0.01)


def test_merger_rate_matches_rg15_anchor():
    # ≈ 1 % per Gyr at log M = 10, z = 0.2 (research §4.2 table, T = 1 Gyr)
    assert float(major_merger_rate(10.0, 0.2)) == pytest.approx(0.0102, rel=0.1)
    assert float(major_merger_rate(11.5, 0.2)) > float(major_merger_rate(10.0, 0.2))


def test_exsitu_median_follows_relation_per_mass_bin(tng100):
    """Median logit f_ex per 0.25-dex bin = logit f_med(M) + type offset (±0.5), within 0.3."""
    m, f, etg = tng100["log_mstar"], tng100["true_exsitu_frac"], tng100["is_etg"]
    assert m.min() >= 9.5 and m.max() <= 11.8
    for lo in np.arange(9.5, 11.75, 0.25):
        sel = (m >= lo) & (m < lo + 0.25)
        assert sel.sum() > 200
        mc = lo + 0.125
        expected = _logit(f_exsitu_median(mc)) + 0.5 * (2 * etg[sel].mean() - 1)
        assert np.median(_logit(f[sel])) == pytest.approx(float(expected), abs=0.3), lo
        # scatter of the logit-normal (0.8) plus the type offsets
        assert 0.6 < np.std(_logit(f[sel])) < 1.1
    assert np.median(f[m > 11.5]) > 0.5
    assert np.median(f[m < 10.0]) < 0.06


def test_major_merger_incidence_rises_with_mass(tng100):
    m, t = tng100["log_mstar"], tng100["true_lmm_lookback_gyr"]
    has = np.isfinite(t)
    low, high = has[m < 10.0].mean(), has[m > 11.3].mean()
    # stated bounds: RG15 rates × (f_ex / f_med)^0.5 since z = 3
    assert 0.2 < low < 0.55
    assert 0.65 < high < 0.95
    assert high > low + 0.25
    assert np.all(t[has] >= 0) and np.all(t[has] < 12.0)
    lm = tng100["true_lmm_log_mass"]
    assert np.array_equal(np.isfinite(lm), has)
    assert np.all(lm[has] <= m[has])
    # recent mergers leave tidal features or companions
    recent = has & (t < 1.0)
    assert recent.sum() > 20
    seen = (tng100["struct_tidal_flux"] > 0) | (tng100["struct_companion_flux"] > 0)
    assert seen[recent].mean() > 0.3
    assert seen[~has].mean() < 0.15


def test_exsitu_fraction_carries_halo_size_and_concentration_signal(tng100):
    m, f = tng100["log_mstar"], tng100["true_exsitu_frac"]
    sel = (m > 10.8) & (m < 11.4) & tng100["is_etg"].astype(bool)
    hi = sel & (f > np.median(f[sel]))
    lo = sel & (f <= np.median(f[sel]))
    assert np.median(tng100["struct_halo_frac"][hi]) > 1.5 * np.median(
        tng100["struct_halo_frac"][lo]
    )
    assert np.median(tng100["struct_sersic_n"][hi]) > np.median(
        tng100["struct_sersic_n"][lo]
    )
    assert np.median(tng100["struct_re_arcsec"][hi]) >= np.median(
        tng100["struct_re_arcsec"][lo]
    )


def _fex_offset(tab):
    return float(
        np.median(
            _logit(tab["true_exsitu_frac"]) - _logit(f_exsitu_median(tab["log_mstar"]))
        )
    )


def test_domain_shifts_in_documented_direction(tng100):
    n = 2000
    ref = {k: v[:n] for k, v in tng100.items()}
    eagle, hsc, simba = _table("eagle", n), _table("hsc", n), _table("simba", n)
    off = {
        name: _fex_offset(t)
        for name, t in (("tng100", ref), ("eagle", eagle), ("hsc", hsc))
    }
    assert off["eagle"] < off["tng100"] - 0.15
    assert off["hsc"] < off["eagle"] - 0.1
    assert DOMAIN_SHIFTS["hsc"].fex_logit < DOMAIN_SHIFTS["eagle"].fex_logit < 0
    # the shift is physical: hsc spheroids are less concentrated at fixed mass (0.45 × 0.5)
    etg_h, etg_t = hsc["is_etg"].astype(bool), ref["is_etg"].astype(bool)
    assert (
        np.median(hsc["struct_sersic_n"][etg_h])
        < np.median(ref["struct_sersic_n"][etg_t]) - 0.1
    )

    def low_mass_size(t):
        s = t["log_mstar"] < 10.3
        return float(
            np.median(t["struct_re_arcsec"][s] * t["struct_kpc_per_arcsec"][s])
        )

    assert low_mass_size(simba) > 1.2 * low_mass_size(ref)
    # simba: softer spheroids and bluer colours
    etg_r, etg_s = ref["is_etg"].astype(bool), simba["is_etg"].astype(bool)
    assert (
        np.median(simba["struct_sersic_n"][etg_s])
        < np.median(ref["struct_sersic_n"][etg_r]) - 0.6
    )
    assert (
        np.median(simba["struct_gr_bulge"]) < np.median(ref["struct_gr_bulge"]) - 0.05
    )


def test_tng50_has_fewer_massive_galaxies_in_population_mode():
    n = 1500
    t100, t50 = _table("tng100", n, "population"), _table("tng50", n, "population")
    f100 = (t100["log_mstar"] > 11).mean()
    f50 = (t50["log_mstar"] > 11).mean()
    assert 0.01 < f100 < 0.1
    assert f50 < 0.5 * f100
    assert np.median(t100["log_mstar"]) < 10.4
