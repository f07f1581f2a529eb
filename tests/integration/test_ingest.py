"""ingest-sim and ingest-survey on small files in exactly the real formats."""

from __future__ import annotations

import numpy as np
import pyarrow.parquet as pq
import pytest

from ergo_ray.cli.main import main
from ergo_ray.config.schema import StorageConfig
from ergo_ray.io import storage
from ergo_ray.io.catalog import read_catalog
from ergo_ray.io.cutout import Cutout
from ergo_ray.io.fits_hsc import write_hsc_cutout
from ergo_ray.io.fits_tng import write_tng_mock

pytestmark = [pytest.mark.ray]

H = 0.6774
SNAPS = {72: 0.3999, 84: 0.1973, 91: 0.0994}
LOOKBACK_FROM_Z0 = {72: 4.414, 84: 2.480, 91: 1.336}


def _galaxy(seed: int, size: int = 64) -> Cutout:
    rng = np.random.default_rng(seed)
    y, x = np.mgrid[:size, :size] - (size - 1) / 2
    r = np.hypot(x, y)
    profile = np.exp(-r / 3.0)
    image = np.stack([a * 40 * profile for a in (0.6, 1.0, 1.3)])
    image += rng.normal(0, 0.05, image.shape)
    return Cutout(image.astype(np.float32), np.zeros(image.shape, np.int32),
                  np.full(image.shape, 0.0025, np.float32), "synthetic")


def _write_tng_set(root: str, store: StorageConfig | None) -> dict:
    import io

    import h5py

    # subhalo → (exsitu, total, snap_last_major, mass_last_major) in TNG units (1e10 Msun/h)
    cats = {
        91: {3: (0.3, 1.2, 72, 0.2), 7: (0.0, 0.5, -1, 0.0), 11: (0.01, 0.01, -1, 0.0)},
        84: {5: (0.6, 2.4, 84, 0.4)},
    }
    for snap, subs in cats.items():
        n = max(subs) + 1
        asm = io.BytesIO()
        with h5py.File(asm, "w") as h5:
            ex = np.zeros(n, np.float32)
            tot = np.zeros(n, np.float32)
            for s, v in subs.items():
                ex[s], tot[s] = v[0], v[1]
            h5["StellarMassExSitu"], h5["StellarMassTotal"] = ex, tot
            h5["StellarMassInSitu"] = tot - ex
        storage.write_bytes(storage.join(root, "assembly", f"galaxies_{snap:03d}.hdf5"),
                            asm.getvalue(), store)
        mrg = io.BytesIO()
        with h5py.File(mrg, "w") as h5:
            sn = np.full(n, -1, np.int16)
            ms = np.zeros(n, np.float32)
            for s, v in subs.items():
                sn[s], ms[s] = v[2], v[3]
            h5["SnapNumLastMajorMerger"], h5["MassLastMajorMerger"] = sn, ms
            h5["NumMajorMergersTotal"] = (sn >= 0).astype(np.uint32)
        storage.write_bytes(storage.join(root, "mergers", f"merger_history_{snap:03d}.hdf5"),
                            mrg.getvalue(), store)
        for s in subs:
            for proj in range(4):
                write_tng_mock(_galaxy(snap * 100 + s * 10 + proj),
                               storage.join(root, "images",
                                            f"shalo_{snap:03d}-{s}_v{proj}_HSC_GRIZY.fits"),
                               redshift=SNAPS[snap], storage_cfg=store)
    storage.write_bytes(storage.join(root, "snapshots.csv"),
                        ("number,redshift\n"
                         + "".join(f"{k},{v}\n" for k, v in SNAPS.items())).encode(),
                        store)
    # SubLink: subhalo 5 at snap 84 is the progenitor of subhalo 3 at snap 91 (one lineage)
    import pyarrow as pa

    buf = io.BytesIO()
    pq.write_table(pa.table({"SnapNum": [91, 91, 91, 84], "SubfindID": [3, 7, 11, 5],
                             "RootDescendantID": [1000, 2000, 3000, 1000]}), buf)
    storage.write_bytes(storage.join(root, "sublink.parquet"), buf.getvalue(), store)
    return cats


def test_ingest_sim_truth_lineage_and_prepare(ray_session, tmp_path):
    root = str(tmp_path / "tng")
    _write_tng_set(root, None)
    out = str(tmp_path / "cat")
    rc = main(["ingest-sim", "--images", f"{root}/images", "--assembly", f"{root}/assembly",
               "--mergers", f"{root}/mergers", "--snapshots", f"{root}/snapshots.csv",
               "--sublink", f"{root}/sublink.parquet", "--domain", "tng100", "--out", out,
               "--preset", "ci"])
    assert rc == 0
    cat = read_catalog(out).to_pandas().set_index("object_id").sort_index()
    # subhalo 11 (log M* = 8.2) is below the mass cut; 3 galaxies × 4 projections remain
    assert len(cat) == 12
    assert not any(i.startswith("tng100-091-11-") for i in cat.index)
    g = cat.loc["tng100-091-3-v0"]
    assert g.true_exsitu_frac == pytest.approx(0.25)
    assert g.true_lmm_lookback_gyr == pytest.approx(LOOKBACK_FROM_Z0[72] - LOOKBACK_FROM_Z0[91],
                                                    abs=0.01)
    assert g.true_lmm_log_mass == pytest.approx(np.log10(0.2e10 / H), abs=0.01)
    assert g.log_mstar == pytest.approx(np.log10(1.2e10 / H), abs=0.01)
    assert g.redshift == pytest.approx(0.0994)
    nm = cat.loc["tng100-091-7-v3"]
    assert np.isnan(nm.true_lmm_lookback_gyr) and np.isnan(nm.true_lmm_log_mass)
    assert cat.loc["tng100-084-5-v1"].true_lmm_lookback_gyr == pytest.approx(0.0, abs=0.01)
    # all projections share root_id, and the SubLink lineage joins snapshots 84 and 91
    assert cat.loc[[f"tng100-091-3-v{p}" for p in range(4)], "root_id"].nunique() == 1
    assert cat.loc["tng100-091-3-v0", "root_id"] == cat.loc["tng100-084-5-v2", "root_id"]
    assert sorted(cat.projection.unique()) == [0, 1, 2, 3]

    prepared = str(tmp_path / "prep")
    assert main(["prepare", "--in", f"{root}/images", "--catalog", out, "--out", prepared,
                 "--preset", "ci"]) == 0
    prep = pq.read_table(storage.join(prepared, "shards")).to_pandas()
    assert sorted(prep.object_id) == sorted(cat.index)
    got = prep.set_index("object_id").loc["tng100-091-3-v0", "true_exsitu_frac"]
    assert got == pytest.approx(0.25)


@pytest.mark.s3
def test_ingest_survey_from_s3_with_bad_cutouts(ray_session, bucket, storage_cfg, s3_overrides):
    root = f"s3://{bucket}/hsc"
    lines = []
    for k in range(5):
        lineno = k + 2
        urls = write_hsc_cutout(_galaxy(k), f"{root}/cutouts", lineno=lineno, tract=9813,
                                storage_cfg=storage_cfg, ra=150.0 + k * 0.01, dec=2.0)
        if k == 1:  # one galaxy lost its i band
            storage.remove(urls[2], storage_cfg)
        if k == 3:  # one galaxy's r band is corrupt
            storage.write_bytes(urls[1], b"SIMPLE  = T / truncated garbage", storage_cfg)
        lines.append(f"{1000 + k},{150.0 + k * 0.01},{2.0},{0.1 + 0.05 * k},{10.0 + 0.2 * k}")
    csv = "object_id,ra,dec,specz_redshift,log_mstar\n" + "\n".join(lines) + "\n"
    storage.write_bytes(f"{root}/catalog.csv", csv.encode(), storage_cfg)
    out = f"s3://{bucket}/ingested"
    rc = main(["ingest-survey", "--cutouts", f"{root}/cutouts", "--catalog", f"{root}/catalog.csv",
               "--domain", "hsc", "--out", out, "--preset", "ci", *s3_overrides])
    assert rc == 0
    cat = read_catalog(out, storage_cfg).to_pandas()
    assert sorted(cat.object_id) == ["1000", "1002", "1004"]
    assert cat.object_id.is_unique
    assert set(cat.domain) == {"hsc"}
    assert not any(c.startswith("true_") for c in cat.columns)
    row = cat.set_index("object_id").loc["1002"]
    assert row.redshift == pytest.approx(0.2) and row.log_mstar == pytest.approx(10.4)
    errors = read_catalog(out, storage_cfg, sub="errors", required=("object_id",)).to_pandas()
    reasons = dict(zip(errors.object_id, errors.reason, strict=True))
    assert set(reasons) == {"1001", "1003"}
    assert reasons["1001"] == "missing_band"
    assert "1003" in reasons and reasons["1003"] != ""
