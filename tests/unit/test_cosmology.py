"""The one cosmology: TNG's flat ΛCDM, checked against published TNG figures and astropy."""

from __future__ import annotations

import itertools

import numpy as np
import pytest

from ergo_ray import cosmology as cosmo


def test_parameters_are_tng():
    c = cosmo.tng_cosmology()
    assert (c.H0.value, c.Om0, c.Ob0) == (67.74, 0.3089, 0.0486)
    assert c.Ode0 == pytest.approx(1 - 0.3089)
    assert c.Tcmb0.value == 0.0          # no radiation, as the simulation's own tables


def test_known_answers():
    # TNG snapshot table: snapshot 91 (z = 0.0994) has lookback time 1.336 Gyr, snapshot 72
    # (z = 0.3999) 4.414 Gyr; the age today is 13.80 Gyr.
    today = float(cosmo.age_gyr(0.0))
    assert today == pytest.approx(13.80, abs=0.01)
    assert today - float(cosmo.age_gyr(0.0994)) == pytest.approx(1.336, abs=0.005)
    assert today - float(cosmo.age_gyr(0.3999)) == pytest.approx(4.414, abs=0.005)
    assert float(cosmo.kpc_per_arcsec(0.2)) == pytest.approx(3.405, rel=0.005)
    assert float(cosmo.distance_modulus(0.4)) == pytest.approx(41.75, abs=0.02)


def test_z_at_age_inverts_age():
    z = np.array([0.0, 0.05, 0.1994, 0.7, 1.5, 2.999, 5.0])
    assert cosmo.z_at_age(cosmo.age_gyr(z)) == pytest.approx(z, abs=1e-4)


@pytest.mark.parametrize(("z", "snap"), [(0.4, 72), (0.0994, 91), (0.05, 91), (0.2, 84),
                                         (0.9, 72), (float("nan"), 91)])
def test_nearest_tng_snapshot(z, snap):
    assert cosmo.nearest_tng_snapshot(z) == snap


def test_snapshot_table_is_monotonic():
    snaps = sorted(cosmo.TNG_SNAPSHOTS)
    assert snaps == list(range(72, 92))
    zs = [cosmo.TNG_SNAPSHOTS[s] for s in snaps]
    assert all(a > b for a, b in itertools.pairwise(zs))
