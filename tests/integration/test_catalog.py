"""``ergo-ray catalog`` end to end: S3 in and out, exact values, readers, bad input, resume.

The model is a real bundle (real encoder, cINN, target transform and OOD reference, written
by :func:`ergo_ray.shared.bundle_format.write_bundle`) with untrained weights: these tests check the
plumbing and the exactly-once guarantees, not the science.
"""

from __future__ import annotations

import contextlib
import io
import json
import os
import signal
import subprocess
import sys
import time

import numpy as np
import pyarrow as pa
import pyarrow.parquet as pq
import pytest

from ergo_ray.cli.main import main
from ergo_ray.config.loader import load_config, resolved_yaml
from ergo_ray.io import storage
from ergo_ray.io.schemas import posterior_schema, posterior_summary_columns

pytestmark = pytest.mark.ray

SAMPLES = 40


# ----------------------------------------------------------------------------- helpers
def write_random_bundle(url: str, cfg, storage_cfg=None, seed: int = 0) -> str:
    """Write a model bundle of the configured size with untrained (random) weights."""
    import torch

    from ergo_ray import __version__
    from ergo_ray.models.cinn import CinnArch, ConditionalINN
    from ergo_ray.models.encoder import build_encoder
    from ergo_ray.models.targets import TargetTransform
    from ergo_ray.shared.bundle_format import npy_bytes, torch_bytes, write_bundle
    from ergo_ray.shared.ood_score import build_reference

    torch.manual_seed(seed)
    size, rep = cfg.preprocess.size, cfg.clr.rep_dim
    enc = build_encoder(cfg.clr.widths, cfg.clr.blocks, rep, size).eval()
    rng = np.random.default_rng(seed)
    imgs = rng.integers(0, 256, (2 * cfg.cinn.n_ood_reference, 3, size, size), dtype=np.uint8)
    with torch.inference_mode():
        reps = enc(torch.from_numpy(imgs).float() / 255).numpy()
    ood = build_reference(reps, n_reference=cfg.cinn.n_ood_reference, k=cfg.ood.k,
                          metric=cfg.ood.metric, quantile=cfg.ood.quantile)
    y = np.stack([rng.uniform(0, 1, 256), rng.uniform(0, 13, 256), rng.uniform(8, 11, 256)], 1)
    y[::3, 1], y[::3, 2] = 15.0, 6.0
    observables = list(cfg.cinn.observables)
    cinn = ConditionalINN(CinnArch.from_config(cfg.cinn, rep + len(observables),
                                               init_seed=seed))
    pre = cfg.preprocess.model_dump(mode="json")
    encoder = {"format": "ergo_ray.encoder", "version": 1,
               "state_dict": {k: v.detach().cpu() for k, v in enc.state_dict().items()},
               "meta": {"clr": cfg.clr.model_dump(mode="json"), "preprocess": pre,
                        "in_size": size, "rep_dim": rep, "epoch": -1,
                        "ergo_ray_version": __version__}}
    transforms = {"targets": TargetTransform.fit(y).to_dict(), "input_size": size,
                  "rep_dim": rep, "observables": observables, "preprocess": pre,
                  "ood": ood.to_dict()}
    files = {
        "encoder.pt": torch_bytes(encoder),
        "cinn.pt": torch_bytes(cinn.payload()),
        "transforms.json": json.dumps(transforms).encode(),
        "config.yaml": resolved_yaml(cfg).encode(),
        "reference.npy": npy_bytes(ood.reference),
        "reference_kdist.npy": npy_bytes(ood.self_kdist),
        "metrics.json": b"{}",
    }
    return write_bundle(url, files, storage_cfg)


def write_prepared_shards(folder, n_units: int, rows: int, size: int, seed: int = 0,
                          no_redshift: tuple[int, ...] = ()) -> list[str]:
    """Prepared shards in the documented layout (uint8 images, kind=prepared-shard).

    Objects whose position is in ``no_redshift`` have a null redshift.
    """
    os.makedirs(folder / "shards", exist_ok=True)
    rng = np.random.default_rng(seed)
    ids = []
    for u in range(n_units):
        oid = [f"hsc-{seed}-{u * rows + i:07d}-p0" for i in range(rows)]
        ids += oid
        img = rng.integers(0, 256, (rows, 3 * size * size), dtype=np.uint8)
        z = [None if u * rows + i in no_redshift else float(v)
             for i, v in enumerate(rng.uniform(0.02, 0.1, rows))]
        t = pa.table({
            "object_id": oid, "root_id": [o[:-3] for o in oid], "domain": ["hsc"] * rows,
            "projection": pa.array([0] * rows, pa.int32()),
            "redshift": pa.array(z, pa.float64()), "i_mag": rng.uniform(16, 19, rows),
            "split": ["test"] * rows,
            "image": pa.FixedSizeListArray.from_arrays(pa.array(img.ravel()), 3 * size * size),
        }).replace_schema_metadata({b"ergo_ray.kind": b"prepared-shard",
                                    b"ergo_ray.image_shape": f"3,{size},{size}".encode()})
        pq.write_table(t, folder / "shards" / f"part-{u:05d}.parquet")
    return ids


def shard_column(paths, column: str) -> np.ndarray:
    """A column of prepared shards, concatenated in file order (``image`` as flat uint8)."""
    parts = [pq.read_table(p, columns=[column]).column(column).combine_chunks() for p in paths]
    if column == "image":
        return np.concatenate([c.flatten().to_numpy() for c in parts])
    return np.concatenate([c.to_numpy(zero_copy_only=False) for c in parts]).astype(float)


def reference_values(bundle_url: str, images: np.ndarray, ids: list[str], seed: int,
                     observables: dict[str, np.ndarray], n_samples: int = SAMPLES
                     ) -> dict[str, np.ndarray]:
    """What the public Python API gives for the same images, observables, IDs and seed."""
    from ergo_ray import load_model
    from ergo_ray.models.cinn import object_seeds

    b = load_model(bundle_url)
    reps = b.represent(images)
    out = b.summarize(b.sample_posterior(images, n_samples, seeds=object_seeds(ids, seed),
                                         observables=observables))
    out["ood_score"] = b.ood_score(reps)
    out["representation"] = reps
    return out


def assert_values_equal(table: pa.Table, ref: dict[str, np.ndarray], ids: list[str],
                        bundle_url: str | None = None) -> None:
    """Summaries equal the API's; the OOD score equals the API's on the same representations.

    The encoder's float32 output differs in the last bits with the batch size (CPU kernels
    change with it). The summaries are continuous in it; the OOD score is not everywhere:
    it divides by the density at the *nearest* reference point, and a near-tie can flip
    which one that is (the untrained test encoder makes its standardised features
    especially sensitive). So the OOD score is checked against ``bundle.ood_score`` of the
    catalogue's own ``representation`` column, and that column against ``represent``.
    """
    t = table.to_pandas().set_index("object_id").loc[ids]
    for col in posterior_summary_columns():
        np.testing.assert_allclose(t[col].to_numpy(), ref[col], rtol=1e-4, atol=1e-5,
                                   equal_nan=True, err_msg=col)
    if bundle_url is None:  # no representation column to check the OOD score against
        assert np.isfinite(t["ood_score"]).all()
        return
    from ergo_ray import load_model

    reps = np.stack(t["representation"].to_numpy()).astype(np.float32)
    np.testing.assert_allclose(reps, ref["representation"], rtol=1e-4, atol=1e-6)
    np.testing.assert_allclose(t["ood_score"].to_numpy(), load_model(bundle_url).ood_score(reps),
                               rtol=1e-5)


def assert_contract_schema(schema: pa.Schema, keep_representation: bool = False) -> None:
    want = posterior_schema(keep_representation)
    assert schema.names == want.names
    assert [f.type for f in schema] == [f.type for f in want]
    md = schema.metadata
    assert md[b"ergo_ray.version"] and md[b"ergo_ray.model_id"]
    cfg = json.loads(md[b"ergo_ray.config"])
    assert cfg["catalog"]["samples"] in (SAMPLES, 400)


def read_parts(out: str, storage_cfg=None) -> pa.Table:
    import pyarrow.dataset as pads

    fs, path = storage.arrow_fs(storage.join(out, "parts"), storage_cfg)
    return pads.dataset(path, filesystem=fs, format="parquet").to_table()


@pytest.fixture(scope="module")
def ci_cfg():
    return load_config("ci", [], [])


@pytest.fixture(scope="module")
def bundle(tmp_path_factory, ci_cfg):
    url = str(tmp_path_factory.mktemp("bundle") / "model")
    write_random_bundle(url, ci_cfg)
    return url


# ------------------------------------------------------------------------------ tests
@pytest.mark.s3
@pytest.mark.slow
def test_catalog_of_mock_hsc_survey_on_s3(ray_session, bucket, storage_cfg, s3_endpoint,
                                          s3_overrides, bundle, tmp_path):
    survey, out = f"s3://{bucket}/hsc", f"s3://{bucket}/cat"
    assert main(["mock", "--preset", "ci", "--domain", "hsc", "--n", "5", "--format", "shards",
                 "--out", survey, "--set", "mock.rows_per_file=4", *s3_overrides]) == 0
    argv = ["catalog", "--preset", "ci", "--model", bundle, "--in", survey, "--out", out,
            "--seed", "7", "--samples", str(SAMPLES), "--batch-size", "3", "--actors", "1:2",
            "--format", "fits", "--merge", "--keep-representation", *s3_overrides]
    assert main(argv) == 0

    # one row per input object, contract columns and types, metadata
    from ergo_ray.io.sources import iter_survey

    pairs = list(iter_survey(survey, storage_cfg))
    all_ids = [r["object_id"] for r, _ in pairs]
    assert len(all_ids) == 10
    table = read_parts(out, storage_cfg)
    assert sorted(table.column("object_id").to_pylist()) == sorted(all_ids)
    fs, path = storage.arrow_fs(out, storage_cfg)
    part = next(f.path for f in fs.get_file_info(pa.fs.FileSelector(path + "/parts"))
                if f.path.endswith(".parquet"))
    assert_contract_schema(pq.read_schema(part, filesystem=fs), keep_representation=True)

    # galaxies whose stamp cannot be prepared (same code and settings as the bundle's) are
    # error rows naming the reason; all others match the Python API for the same seed
    from ergo_ray import load_model
    from ergo_ray.errors import BadObjectError
    from ergo_ray.infer.pipeline import PREPARE_KEYS
    from ergo_ray.preprocess import prepare_image

    b = load_model(bundle)
    kw = {k: b.preprocess[k] for k in PREPARE_KEYS if k in b.preprocess}
    ids, images, failed = [], [], {}
    observed: dict[str, list[float]] = {"redshift": [], "i_mag": []}
    for row, cut in pairs:  # the full cutout, mask included (the float-image API has none)
        try:
            img, _ = prepare_image(cut, size=b.input_size, **kw)
        except BadObjectError as err:
            failed[row["object_id"]] = err.reason
            continue
        ids.append(row["object_id"])
        images.append(img)
        for c, values in observed.items():
            values.append(row[c])
    assert len(ids) >= 5
    df_all = table.to_pandas().set_index("object_id")
    assert sorted(df_all.index[df_all["status"] == "error"]) == sorted(failed)
    for oid, reason in failed.items():
        assert f"preprocessing failed: {reason}" in df_all.loc[oid, "error"]
        assert df_all.loc[oid, "n_samples"] == 0 and np.isnan(df_all.loc[oid, "ood_score"])
    ok = df_all.loc[ids]
    assert (ok["status"] == "ok").all() and ok["error"].isna().all()
    assert (ok["n_samples"] == SAMPLES).all()
    assert_values_equal(table, reference_values(bundle, np.stack(images), ids, seed=7,
                                                observables=observed), ids, bundle)

    # the finished catalogue reads in pandas (straight from S3), pyarrow, DuckDB, astropy
    import duckdb
    import pandas as pd
    from astropy.table import Table

    df = pd.read_parquet(f"{out}/parts", storage_options={
        "client_kwargs": {"endpoint_url": s3_endpoint}, "key": "testing", "secret": "testing"})
    assert sorted(df["object_id"]) == sorted(all_ids)
    merged = tmp_path / "catalog.parquet"
    merged.write_bytes(storage.read_bytes(f"{out}/catalog.parquet", storage_cfg))
    assert pq.read_table(merged).num_rows == 10
    con = duckdb.connect()
    n, distinct, mean = con.execute(
        f"select count(*), count(distinct object_id), "
        f"avg(exsitu_frac_mean) filter (where status = 'ok') "
        f"from read_parquet('{merged}')").fetchone()
    assert (n, distinct) == (10, 10)
    assert mean == pytest.approx(float(np.nanmean(table.column("exsitu_frac_mean"))))
    fits = tmp_path / "catalog.fits"
    fits.write_bytes(storage.read_bytes(f"{out}/catalog.fits", storage_cfg))
    for t in (Table.read(fits), Table.read(merged, format="parquet")):
        assert len(t) == 10 and sorted(t["object_id"]) == sorted(all_ids)
        assert list(t.colnames) == posterior_schema(keep_representation=True).names
    tf = Table.read(fits, character_as_bytes=False)
    fits_p84 = dict(zip(tf["object_id"], tf["lmm_log_mass_p84"], strict=True))
    np.testing.assert_allclose([fits_p84[i] for i in ids],
                               df.set_index("object_id").loc[ids, "lmm_log_mass_p84"],
                               equal_nan=True)

    # bookkeeping, and a re-run finds nothing to do
    success = json.loads(storage.read_bytes(f"{out}/_SUCCESS", storage_cfg))
    assert (success["rows"], success["errors"], success["duplicate_rows"]) == (10, len(failed),
                                                                                0)
    actors = json.loads(storage.read_bytes(f"{out}/_meta/actors.json", storage_cfg))
    assert sum(actors["nodes"].values()) == 10
    before = sorted(f.path for f in fs.get_file_info(pa.fs.FileSelector(path + "/parts")))
    assert main(argv) == 0
    after = sorted(f.path for f in fs.get_file_info(pa.fs.FileSelector(path + "/parts")))
    assert before == after and len(after) == 3


def test_bad_inputs_become_error_rows(ray_session, bundle, tmp_path):
    survey, out = tmp_path / "hsc", tmp_path / "cat"
    assert main(["mock", "--preset", "ci", "--domain", "hsc", "--n", "3", "--projections", "1",
                 "--format", "hsc-fits", "--out", str(survey)]) == 0
    files = sorted((survey / "cutouts").glob("*.fits"))
    by_line: dict[str, list] = {}
    for f in files:
        by_line.setdefault(f.name.split("-")[0], []).append(f)
    lines = sorted(by_line)
    assert len(lines) == 3
    # object 0: a truncated band file; object 1: a band file missing; 2 stays good
    trunc = next(f for f in by_line[lines[0]] if "-HSC-R-" in f.name)
    trunc.write_bytes(trunc.read_bytes()[:1000])
    gone = next(f for f in by_line[lines[1]] if "-HSC-G-" in f.name)
    gone.unlink()
    argv = ["catalog", "--preset", "ci", "--model", bundle, "--in", str(survey), "--out",
            str(out), "--samples", str(SAMPLES), "--batch-size", "2"]
    assert main(argv) == 0
    t = read_parts(str(out)).to_pandas().set_index("object_id")
    assert len(t) == 3 and t.index.is_unique
    errors = t[t["status"] == "error"]
    assert len(errors) == 2
    err0 = errors["error"].str.contains(trunc.name)
    err1 = errors["error"].str.contains("missing band")
    assert err0.sum() == 1 and err1.sum() == 1
    assert errors[list(posterior_summary_columns())].isna().all().all()
    assert errors["ood_score"].isna().all() and (errors["n_samples"] == 0).all()
    good = t[t["status"] == "ok"]
    assert len(good) == 1 and good["error"].isna().all()
    assert np.isfinite(good["exsitu_frac_median"]).all()
    success = json.loads((out / "_SUCCESS").read_text())
    assert (success["rows"], success["errors"]) == (3, 2)
    # a complete catalogue with errors: --fail-on-error turns them into exit status 1
    assert main([*argv, "--fail-on-error"]) == 1

    # the same survey through `ergo-ray prepare` first gives the same catalogue: raw input
    # is prepared by the same code; objects prepare rejected come back as error rows
    prep, out2 = tmp_path / "prep", tmp_path / "cat2"
    assert main(["prepare", "--preset", "ci", "--in", str(survey), "--out", str(prep)]) == 0
    assert main(["catalog", "--preset", "ci", "--model", bundle, "--in", str(prep), "--out",
                 str(out2), "--samples", str(SAMPLES), "--batch-size", "3"]) == 0
    t2 = read_parts(str(out2)).to_pandas().set_index("object_id").loc[t.index]
    assert (t2["status"] == t["status"]).all()
    assert t2.loc[errors.index, "error"].str.contains("preprocessing failed").all()
    cols = [*posterior_summary_columns(), "ood_score"]
    np.testing.assert_allclose(t2.loc[good.index, cols].to_numpy(float),
                               good[cols].to_numpy(float), rtol=1e-5, equal_nan=True)


def test_prepared_input_with_unreadable_shard_and_representation(ray_session, bundle, tmp_path,
                                                                  ci_cfg):
    size = ci_cfg.preprocess.size
    ids = write_prepared_shards(tmp_path / "prep", n_units=3, rows=5, size=size, seed=3,
                                no_redshift=(6,))
    (tmp_path / "prep" / "shards" / "part-99999.parquet").write_bytes(b"PAR1 not parquet")
    # objects that `prepare` rejected are listed in errors/ and become error rows too
    os.makedirs(tmp_path / "prep" / "errors")
    pq.write_table(pa.table({"object_id": ["hsc-3-9999999-p0"], "input_url": ["raw/x.fits"],
                             "reason": ["no_source"]}),
                   tmp_path / "prep" / "errors" / "part-00000.parquet")
    out = tmp_path / "cat"
    assert main(["catalog", "--preset", "ci", "--model", bundle, "--in", str(tmp_path / "prep"),
                 "--out", str(out), "--samples", str(SAMPLES), "--seed", "11",
                 "--keep-representation"]) == 0
    table = read_parts(str(out))
    assert table.num_rows == len(ids) + 2
    assert_contract_schema(pq.read_schema(next((out / "parts").glob("*.parquet"))),
                           keep_representation=True)
    df = table.to_pandas().set_index("object_id")
    bad = df[df["status"] == "error"]
    assert sorted(bad.index) == sorted([str(tmp_path / "prep" / "shards" / "part-99999.parquet"),
                                        "hsc-3-9999999-p0", ids[6]])
    errors = " | ".join(bad["error"])
    assert "cannot read prepared shard" in errors
    assert "preprocessing failed: no_source" in errors
    # the model is conditioned on redshift and i_mag (ci preset): an object without a
    # redshift is an error row that says so
    assert bad.loc[ids[6], "error"] == (f"{ids[6]}: no redshift in the input catalogue (the "
                                        "model is conditioned on redshift, i_mag)")
    paths = sorted((tmp_path / "prep" / "shards").glob("part-0*.parquet"))
    images = shard_column(paths, "image").reshape(-1, 3, size, size)
    good = [i for i in range(len(ids)) if i != 6]
    obs = {c: shard_column(paths, c)[good] for c in ("redshift", "i_mag")}
    assert np.isnan(shard_column(paths, "redshift")[6])
    sub = [ids[i] for i in good]
    assert_values_equal(table, reference_values(bundle, images[good], sub, seed=11,
                                                observables=obs), sub, bundle)


# ------------------------------------------------------------------ distribution
def test_two_actors_share_the_galaxies_and_parts_stream_out(ray_session, bundle, tmp_path,
                                                            ci_cfg):
    """Reading is its own operator, both actors get about half of the galaxies, and a
    unit's part is written as soon as its rows are back (not at the end of the job).

    The job is model-bound, as a catalogue is: 3,840 galaxies with 400 posterior samples
    each (the product's ``infer.n_samples``). With 960 galaxies and the tests' 40 samples a
    16-galaxy batch took ~3 ms, the 3-s job was bound by reading and start-up, and Ray Data
    handed each block to whichever actor was idle: the split (25/75 % and 28/72 % in two
    suite runs) said nothing about sharing work."""
    from ergo_ray.infer.pipeline import CatalogOptions, build_dataset, run_catalog

    n_units, rows = 10, 384
    ids = write_prepared_shards(tmp_path / "prep", n_units, rows, ci_cfg.preprocess.size)
    out = tmp_path / "cat"
    opts = CatalogOptions(model=bundle, input=str(tmp_path / "prep"), out=str(out),
                          n_samples=400, seed=3, actors_min=2, actors_max=2,
                          cpus_per_actor=1.0, batch_size=16)
    written: list[int] = []
    res = run_catalog(opts, on_write=lambda _key, rows_so_far: written.append(rows_so_far))
    assert res.rows == len(ids) and res.errors == 0
    assert len(written) == n_units
    assert written[0] < len(ids) / 2, f"first part written after {written[0]} of {len(ids)} rows"
    runs = json.loads((out / "_meta" / "actors.json").read_text())["runs"]
    per_actor = [a["rows"] for a in runs[-1]["actors"]]
    assert len(per_actor) == 2 and min(per_actor) >= 0.3 * len(ids), per_actor
    _check_exactly_once_n(out, ids, n_units)
    # the reader and the model actor are separate operators in the executed plan
    ds = build_dataset([], opts, None, image_size=ci_cfg.preprocess.size, preprocess={})
    text = io.StringIO()
    with contextlib.redirect_stdout(text):
        ds.explain()
    physical = text.getvalue().split("Physical Plan (Optimized)")[1]
    ops = [line.strip(" +-") for line in physical.splitlines() if "[" in line]
    assert ops[0] == "ActorPoolMapOperator[MapBatches(PosteriorPredictor)]", ops
    assert ops[1].startswith("TaskPoolMapOperator[MapBatches(read_units)"), ops


def _check_exactly_once_n(out, ids: list[str], n_units: int) -> pa.Table:
    table = read_parts(str(out))
    got = table.column("object_id").to_pylist()
    assert len(got) == len(set(got)) == len(ids)
    assert sorted(got) == sorted(ids)
    assert set(table.column("status").to_pylist()) == {"ok"}
    assert len(_parts(out)) == n_units
    return table


# ------------------------------------------------------------------ interruptions
def _spawn(argv: list[str], log) -> subprocess.Popen:
    """Run the CLI as a second driver of the test session's Ray (``RAY_ADDRESS``), as a job
    on a cluster runs; in its own process session; output to the file ``log``."""
    import ray

    env = dict(os.environ)
    env["RAY_ADDRESS"] = ray.get_runtime_context().gcs_address
    with open(log, "wb") as fh:
        return subprocess.Popen([sys.executable, "-m", "ergo_ray.cli.main", *argv], env=env,
                                stdout=fh, stderr=subprocess.STDOUT, start_new_session=True)


def _kill_group(proc: subprocess.Popen) -> None:
    """Kill what is left of the job's driver (its own process group, started here).

    Ray's workers belong to the session's raylet, which ends a dead driver's actors itself.
    """
    with contextlib.suppress(ProcessLookupError):
        os.killpg(proc.pid, signal.SIGKILL)
    proc.wait(30)


def _wait_for(cond, timeout: float, proc: subprocess.Popen, log) -> None:
    end = time.monotonic() + timeout
    while time.monotonic() < end:
        if cond():
            return
        if proc.poll() is not None:
            out = log.read_text(errors="replace")
            pytest.fail(f"catalog exited early with {proc.returncode}:\n{out[-3000:]}")
        time.sleep(0.1)
    pytest.fail("timed out waiting for the catalogue job")


def _parts(out) -> list:
    return sorted((out / "parts").glob("part-*.parquet")) if (out / "parts").exists() else []


N_UNITS, ROWS = 60, 4
SLOW_ARGS = ["--samples", "400", "--batch-size", "2", "--set", "infer.log_every_s=2"]


def _check_exactly_once(out, ids: list[str]) -> pa.Table:
    table = read_parts(str(out))
    got = table.column("object_id").to_pylist()
    assert len(got) == len(set(got)) == len(ids)
    assert sorted(got) == sorted(ids)
    assert set(table.column("status").to_pylist()) == {"ok"}
    assert len(_parts(out)) == N_UNITS
    assert not [p for p in (out / "parts").iterdir() if ".tmp-" in p.name]
    return table


@pytest.mark.slow
def test_driver_killed_then_rerun_gives_each_object_once(ray_session, bundle, tmp_path, ci_cfg):
    ids = write_prepared_shards(tmp_path / "prep", N_UNITS, ROWS, ci_cfg.preprocess.size)
    out = tmp_path / "cat"
    argv = ["catalog", "--preset", "ci", "--model", bundle, "--in", str(tmp_path / "prep"),
            "--out", str(out), *SLOW_ARGS]
    log = tmp_path / "job.log"
    proc = _spawn(argv, log)
    try:
        _wait_for(lambda: len(_parts(out)) >= 0.4 * N_UNITS, 300, proc, log)
        os.kill(proc.pid, signal.SIGKILL)  # the driver; Ray ends its actors and tasks
        proc.wait(30)
        before = {p.name: (p.stat().st_ino, p.stat().st_mtime_ns) for p in _parts(out)}
    finally:
        _kill_group(proc)
    written = len(before)
    assert 0.4 * N_UNITS <= written < N_UNITS, "the driver was not killed mid-run"
    assert not (out / "_SUCCESS").exists()
    # re-run the same command (here in-process, on the same Ray): it computes only the rest
    assert main(argv) == 0
    after = {p.name: (p.stat().st_ino, p.stat().st_mtime_ns) for p in _parts(out)}
    assert {k: after[k] for k in before} == before, "a finished part was written again"
    runs = json.loads((out / "_meta" / "actors.json").read_text())["runs"]
    assert len(runs) == 1  # the killed driver wrote none
    assert sum(a["rows"] for a in runs[0]["actors"]) == (N_UNITS - written) * ROWS
    table = _check_exactly_once(out, ids)
    success = json.loads((out / "_SUCCESS").read_text())
    assert success["rows"] == len(ids) and success["duplicate_rows"] == 0
    # values are those of an uninterrupted computation
    sub = ids[:4] + ids[-4:]
    paths = [tmp_path / "prep" / "shards" / f"part-{u:05d}.parquet" for u in (0, N_UNITS - 1)]
    size = ci_cfg.preprocess.size
    ref = reference_values(bundle, shard_column(paths, "image").reshape(-1, 3, size, size), sub,
                           seed=ci_cfg.seed, n_samples=400,
                           observables={c: shard_column(paths, c) for c in ("redshift", "i_mag")})
    assert_values_equal(table, ref, sub)


@pytest.mark.slow
def test_killed_actor_is_restarted_and_nothing_is_lost(ray_session, bundle, tmp_path, ci_cfg):
    ids = write_prepared_shards(tmp_path / "prep", N_UNITS, ROWS, ci_cfg.preprocess.size,
                                seed=5)
    out = tmp_path / "cat"
    log = tmp_path / "job.log"
    proc = _spawn(["catalog", "--preset", "ci", "--model", bundle, "--in",
                   str(tmp_path / "prep"), "--out", str(out), *SLOW_ARGS], log)
    actors_dir = out / "_meta" / "actors"
    try:
        def actor_working() -> bool:
            return actors_dir.exists() and any(actors_dir.iterdir()) and len(_parts(out)) >= 2
        _wait_for(actor_working, 300, proc, log)
        first = json.loads(next(actors_dir.iterdir()).read_text())
        os.kill(first["pid"], signal.SIGKILL)
        written = len(_parts(out))
        rc = proc.wait(420)
    finally:
        _kill_group(proc)
    text = log.read_text(errors="replace")
    assert rc == 0, text[-3000:]
    assert written < N_UNITS, "the actor was not killed mid-run"
    _check_exactly_once(out, ids)
    started = json.loads((out / "_meta" / "actors.json").read_text())["started_actors"]
    pids = {a["pid"] for a in started}
    assert first["pid"] in pids and len(pids) >= 2, "no replacement actor started"
    assert "catalog done: 240 rows (0 errors) from 60 units" in text


def test_rerun_with_other_seed_is_refused(ray_session, bundle, tmp_path, ci_cfg):
    write_prepared_shards(tmp_path / "prep", 1, 2, ci_cfg.preprocess.size)
    base = ["catalog", "--preset", "ci", "--model", bundle, "--in", str(tmp_path / "prep"),
            "--out", str(tmp_path / "cat"), "--samples", str(SAMPLES)]
    assert main(base) == 0
    assert main([*base, "--seed", "99"]) == 2
    assert main([*base[:-2], "--samples", "1"]) == 2
    assert main([*base, "--actors", "3:1"]) == 2
    # actors that would take every CPU of the local instance leave none for the readers
    fresh = [a if a != str(tmp_path / "cat") else str(tmp_path / "cat2") for a in base]
    assert main([*fresh, "--actors", "4:4", "--cpus-per-actor", "1"]) == 2
    assert not (tmp_path / "cat2" / "_SUCCESS").exists()


def test_fits_export_is_a_binary_table(ray_session, bundle, tmp_path, ci_cfg):
    write_prepared_shards(tmp_path / "prep", 2, 3, ci_cfg.preprocess.size)
    out = tmp_path / "cat"
    assert main(["catalog", "--preset", "ci", "--model", bundle, "--in", str(tmp_path / "prep"),
                 "--out", str(out), "--samples", str(SAMPLES), "--format", "fits",
                 "--keep-representation"]) == 0
    from astropy.io import fits

    with fits.open(io.BytesIO((out / "catalog.fits").read_bytes())) as hdul:
        hdu = hdul[1]
        assert isinstance(hdu, fits.BinTableHDU) and hdu.header["MODELID"]
        assert len(hdu.data) == 6
        assert hdu.data["representation"].shape == (6, 256)
        assert set(hdu.data["status"]) == {"ok"}
