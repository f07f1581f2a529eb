"""``ergo-ray match`` on local folders: pairs inside the box, one-to-one, clear errors."""

from __future__ import annotations

import json

import numpy as np
import pyarrow as pa
import pyarrow.parquet as pq

from ergo_ray.cli.main import main


def _write_set(folder, sub, prefix, rng, n, shift=0.0, files=2, drop=()):
    (folder / sub).mkdir(parents=True)
    cols = {
        "object_id": [f"{prefix}-{i:05d}" for i in range(n)],
        "domain": [prefix] * n,
        "redshift": rng.uniform(0.1, 0.4, n),
        "i_mag": rng.normal(19 + shift, 1.0, n),
        "r90_px": rng.lognormal(np.log(12), 0.4, n),
        "image": [b"x"] * n,  # never read
    }
    cols["i_mag"][::50] = np.nan
    table = pa.table({k: v for k, v in cols.items() if k not in drop})
    for k, idx in enumerate(np.array_split(np.arange(n), files)):
        pq.write_table(table.take(pa.array(idx)), folder / sub / f"part-{k:05d}.parquet")
    return table


def test_match_stage_writes_valid_pairs(tmp_path):
    rng = np.random.default_rng(0)
    obs = _write_set(tmp_path / "hsc", "shards", "hsc", rng, 3000)
    sim = _write_set(tmp_path / "tng", "catalog", "tng100", rng, 2000, shift=0.2)
    out = tmp_path / "match"
    assert main(["match", "--observed", str(tmp_path / "hsc"), "--simulated",
                 str(tmp_path / "tng"), "--out", str(out), "--preset", "ci"]) == 0
    pairs = pq.read_table(out / "pairs" / "part-00000.parquet")
    summary = json.loads((out / "summary.json").read_text())
    assert summary["pairs"] == pairs.num_rows > 1000
    assert summary["observed"] == 3000 and summary["observed_valid"] == 3000 - 60
    o_ids, s_ids = pairs.column("observed_id").to_pylist(), pairs.column("simulated_id").to_pylist()
    assert len(set(o_ids)) == len(o_ids) and len(set(s_ids)) == len(s_ids)
    o = obs.to_pandas().set_index("object_id").loc[o_ids]
    s = sim.to_pandas().set_index("object_id").loc[s_ids]
    assert np.all(np.abs(o["redshift"].to_numpy() - s["redshift"].to_numpy()) <= 0.01)
    assert np.all(np.abs(o["i_mag"].to_numpy() - s["i_mag"].to_numpy()) <= 0.1)
    assert np.all(np.abs(o["r90_px"].to_numpy() - s["r90_px"].to_numpy()) <= 5.0)
    assert set(pairs.column("simulated_domain").to_pylist()) == {"tng100"}
    assert (out / "_meta" / "config.yaml").exists()
    # Seeded: the same command gives the same pairs; another seed other pairs.
    out2 = tmp_path / "match2"
    assert main(["match", "--observed", str(tmp_path / "hsc"), "--simulated",
                 str(tmp_path / "tng"), "--out", str(out2), "--preset", "ci",
                 "--set", "match.seed=7"]) == 0
    other = pq.read_table(out2 / "pairs" / "part-00000.parquet")
    assert other.column("simulated_id").to_pylist() != s_ids


def test_match_stage_names_missing_columns(tmp_path, capsys):
    rng = np.random.default_rng(1)
    _write_set(tmp_path / "hsc", "shards", "hsc", rng, 50)
    _write_set(tmp_path / "tng", "catalog", "tng100", rng, 50, drop=("r90_px",))
    rc = main(["match", "--observed", str(tmp_path / "hsc"), "--simulated", str(tmp_path / "tng"),
               "--out", str(tmp_path / "m"), "--preset", "ci"])
    assert rc == 2
    err = capsys.readouterr().err
    assert "missing column(s) 'r90_px'" in err and "part-00000.parquet" in err
    rc = main(["match", "--observed", str(tmp_path / "nothing"), "--simulated",
               str(tmp_path / "tng"), "--out", str(tmp_path / "m"), "--preset", "ci"])
    assert rc == 2
