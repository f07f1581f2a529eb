import json

import numpy as np
import pytest

from ergo_ray.errors import InputError
from ergo_ray.ingest.tng import (
    parse_image_name,
    read_snapshot_table,
    truth_from_catalogues,
)

# Redshifts and lookback times (from z = 0) of the TNG snapshot table (formats research §2.5).
SNAPS = {72: 0.3999, 84: 0.1973, 91: 0.0994}
LOOKBACK_FROM_Z0 = {72: 4.414, 84: 2.480, 91: 1.336}


def test_parse_image_name():
    p = parse_image_name("bucket/x/shalo_091-5321_v2_HSC_GRIZY.fits.gz")
    assert (p.snap, p.subhalo, p.projection) == (91, 5321, 2)
    assert parse_image_name("shalo_091-5321_v2_photo.fits") is None


def test_truth_matches_hand_computation():
    t = truth_from_catalogues(
        snap=91,
        stellar_exsitu=np.array([0.3, 0.0, 1.0]),
        stellar_total=np.array([1.2, 0.5, 0.0]),
        snap_last_major=np.array([72, -1, 84]),
        mass_last_major=np.array([0.2, 0.0, 0.1]),
        snapshots=SNAPS,
    )
    assert t["true_exsitu_frac"][0] == pytest.approx(0.25)
    assert t["true_exsitu_frac"][1] == 0.0
    assert np.isnan(t["true_exsitu_frac"][2])  # total 0 → NaN
    # log10(1.2e10 / 0.6774) = 10.2484
    assert t["log_mstar"][0] == pytest.approx(10.2484, abs=0.01)
    lookback = LOOKBACK_FROM_Z0
    assert t["true_lmm_lookback_gyr"][0] == pytest.approx(lookback[72] - lookback[91], abs=0.01)
    assert t["true_lmm_lookback_gyr"][2] == pytest.approx(lookback[84] - lookback[91], abs=0.01)
    assert np.isnan(t["true_lmm_lookback_gyr"][1]) and np.isnan(t["true_lmm_log_mass"][1])
    # log10(0.2e10 / 0.6774) = 9.4702
    assert t["true_lmm_log_mass"][0] == pytest.approx(9.4702, abs=0.01)
    assert np.all(t["redshift"] == 0.0994)


def test_missing_snapshot_is_an_error_not_a_guess():
    with pytest.raises(InputError, match=r"snapshot\(s\) \[50\]"):
        truth_from_catalogues(snap=91, stellar_exsitu=np.array([0.1]),
                              stellar_total=np.array([1.0]),
                              snap_last_major=np.array([50]), mass_last_major=np.array([0.1]),
                              snapshots=SNAPS, source="x")


def test_snapshot_table_formats():
    api = json.dumps([{"number": 72, "redshift": 0.3999},
                      {"number": 91, "redshift": 0.0994}]).encode()
    assert read_snapshot_table(api, "api.json") == {72: 0.3999, 91: 0.0994}
    csv = b"number,redshift\n72,0.3999\n91,0.0994\n"
    assert read_snapshot_table(csv, "t.csv") == {72: 0.3999, 91: 0.0994}
    with pytest.raises(InputError, match="number,redshift"):
        read_snapshot_table(b"a,b\n1,2\n", "bad.csv")
