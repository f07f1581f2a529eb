"""``ergo-ray train-cinn`` and ``ergo-ray embed`` end to end on the loopback S3 endpoint.

Inputs are small prepared shards with known truth (``write_toy_prepared_shards``) and an
encoder exported exactly as ``train-nnclr`` exports it (real network, untrained weights):
these tests check the stage — Ray Data embedding, Ray Train training and resume, the bundle
on S3 and its reproducibility — not the science.
"""

from __future__ import annotations

import json
from pathlib import Path

import numpy as np
import pyarrow.parquet as pq
import pytest

import ergo_ray
from ergo_ray.cli.main import main
from ergo_ray.config.loader import load_config
from ergo_ray.io import storage as st
from ergo_ray.io.schemas import posterior_summary_columns

pytestmark = [pytest.mark.ray, pytest.mark.s3, pytest.mark.slow]

SIZE = 24


@pytest.fixture(scope="module")
def inputs(tmp_path_factory):
    """Toy prepared shards (tng100, tng50 with truth; hsc without) and an NNCLR encoder."""
    import torch

    from ergo_ray.mock.toy import write_toy_prepared_shards
    from ergo_ray.models.encoder import build_encoder
    from ergo_ray.train.checkpoint import export_encoder

    tmp = tmp_path_factory.mktemp("cinn")
    cfg = load_config("ci")
    data = write_toy_prepared_shards(
        str(tmp / "prep"),
        60,
        size=SIZE,
        domains=("tng100", "tng50", "hsc"),
        rows_per_file=32,
    )
    torch.manual_seed(0)
    enc = build_encoder(cfg.clr.widths, cfg.clr.blocks, cfg.clr.rep_dim, SIZE)
    export_encoder(
        str(tmp / "nnclr" / "encoder.pt"),
        enc,
        clr=cfg.clr.model_dump(mode="json"),
        preprocess=cfg.preprocess.model_dump(mode="json"),
        in_size=SIZE,
        rep_dim=cfg.clr.rep_dim,
    )
    return data, str(tmp / "nnclr")


def _upload(local_dir: str, url: str, storage_cfg) -> None:
    fs, path = st.fsspec_fs(url, storage_cfg)
    fs.put(local_dir.rstrip("/") + "/", path + "/", recursive=True)


def test_train_cinn_bundle_on_s3(
    ray_session, inputs, bucket, storage_cfg, s3_overrides, tmp_path
):
    data, encoder = inputs
    s3_data = []
    for d in data:
        url = f"s3://{bucket}/prep/{d.rstrip('/').split('/')[-1]}"
        _upload(d, url, storage_cfg)
        s3_data.append(url)
    out = f"s3://{bucket}/models/bundle"
    argv = [
        "train-cinn",
        "--preset",
        "ci",
        *s3_overrides,
        "--data",
        *s3_data,
        "--encoder",
        encoder,
        "--out",
        out,
        "--workers",
        "1",
        "--baseline",
    ]
    assert main(argv) == 0

    b = ergo_ray.load_model(out, storage=storage_cfg)
    assert b.has_baseline and b.input_size == SIZE
    # the ci preset, like local, conditions the cINN on the representation, the redshift
    # and the i magnitude
    assert b.observables == ("redshift", "i_mag") and b.cinn.arch.cond_in == 258
    m = b.metrics
    assert m["domains"] == ["tng100", "tng50"]
    n = m["n_rows"]
    assert n["train"] > 50 and n["val"] > 0 and n["test"] > 0
    assert m["training"]["epochs"] == 2 and len(m["training"]["history"]) == 2
    for t in ("exsitu_frac", "lmm_lookback_gyr", "lmm_log_mass"):
        c = m["test"]["coverage"][t]
        # every toy galaxy had a major merger, so all three targets are scored on every
        # test galaxy, and a coverage is a count of them
        assert c["n"] == n["test"]
        for k in ("c68", "c90"):
            assert c[k] * c["n"] == pytest.approx(round(c[k] * c["n"]), abs=1e-6)
    lat = m["test"]["latent"]
    assert lat["n"] == n["test"]
    assert lat["max_abs_mean"] == pytest.approx(max(abs(v) for v in lat["mean"]))
    # ‖cov − I‖_F is at least the norm of its diagonal, (std_i² − 1)
    diag = np.sqrt(sum((sd**2 - 1.0) ** 2 for sd in lat["std"]))
    assert lat["cov_residual_fro"] >= diag - 1e-9
    assert "exsitu_frac_within_0.1" in m["baseline"]["test"]["accuracy"]
    assert len(b.ood.reference) == 32

    # Samples from the S3 bundle are reproducible and identical to a local copy's.
    rng = np.random.default_rng(0)
    imgs = rng.integers(0, 256, (5, 3, SIZE, SIZE), dtype=np.uint8)
    obs = {"redshift": [0.1, 0.15, 0.2, 0.3, 0.4], "i_mag": [16.0, 17, 18, 17.5, 19]}
    s1 = b.sample_posterior(imgs, 30, seed=4, observables=obs)
    assert np.array_equal(
        s1,
        ergo_ray.load_model(out, storage=storage_cfg).sample_posterior(
            imgs, 30, seed=4, observables=obs
        ),
    )
    fs, path = st.fsspec_fs(out, storage_cfg)
    (tmp_path / "copy").mkdir()
    for name in json.loads(fs.cat_file(f"{path}/manifest.json"))["files"]:
        fs.get_file(f"{path}/{name}", str(tmp_path / "copy" / name))
    fs.get_file(f"{path}/manifest.json", str(tmp_path / "copy" / "manifest.json"))
    local = ergo_ray.load_model(str(tmp_path / "copy"))
    assert local.model_id == b.model_id
    assert np.array_equal(local.sample_posterior(imgs, 30, seed=4, observables=obs), s1)
    assert list(b.summarize(s1)) == list(posterior_summary_columns())

    # A re-run resumes: representations and final checkpoints are reused, same model.
    assert main(argv) == 0
    assert ergo_ray.load_model(out, storage=storage_cfg).model_id == b.model_id

    # embed: representations of one prepared set with the bundle's encoder.
    emb = str(tmp_path / "emb")
    assert (
        main(
            [
                "embed",
                "--preset",
                "ci",
                *s3_overrides,
                "--model",
                out,
                "--in",
                s3_data[0],
                "--out",
                emb,
            ]
        )
        == 0
    )
    table = pq.read_table(emb)
    assert table.num_rows == 60
    assert table.schema.field("representation").type.list_size == 256
    assert {"object_id", "root_id", "domain", "split", "log_mstar"} <= set(
        table.column_names
    )
    assert "image" not in table.column_names
    from ergo_ray.io.prepared import discover_inputs
    from ergo_ray.train.data import read_split

    (inp,) = discover_inputs([data[0]])
    test = read_split([inp], split="test", columns=("image", "object_id"))
    got = {
        o: r
        for o, r in zip(
            table["object_id"].to_pylist(),
            table["representation"].to_pylist(),
            strict=True,
        )
    }
    expect = b.represent(test["image"])
    assert np.allclose(np.array([got[o] for o in test["object_id"]]), expect, atol=1e-5)
    with open(f"{emb}/_meta/model.json") as fh:
        assert json.load(fh)["model_id"] == b.model_id


def test_train_cinn_bad_inputs(ray_session, inputs, tmp_path, capsys):
    data, encoder = inputs
    # inputs without a column the cINN is conditioned on (ci: redshift, i_mag)
    no_mag = tmp_path / "no_mag" / "shards"
    no_mag.mkdir(parents=True)
    for f in sorted((Path(data[0]) / "shards").glob("*.parquet")):
        pq.write_table(pq.read_table(f).drop_columns(["i_mag"]), no_mag / f.name)
    argv = ["train-cinn", "--preset", "ci", "--data", str(no_mag.parent), "--encoder", encoder,
            "--out", str(tmp_path / "m")]
    capsys.readouterr()
    assert main(argv) == 2
    assert "no i_mag column, which cinn.observables ['redshift', 'i_mag']" in (
        capsys.readouterr().err)
    hsc_only = [d for d in data if d.rstrip("/").endswith("hsc")]
    assert (
        main(
            [
                "train-cinn",
                "--preset",
                "ci",
                "--data",
                *hsc_only,
                "--encoder",
                encoder,
                "--out",
                str(tmp_path / "b"),
            ]
        )
        == 2
    )
    assert (
        main(
            [
                "train-cinn",
                "--preset",
                "ci",
                "--data",
                *data,
                "--encoder",
                str(tmp_path / "missing"),
                "--out",
                str(tmp_path / "b"),
            ]
        )
        == 1
    )
    assert (
        main(
            [
                "embed",
                "--preset",
                "ci",
                "--model",
                str(tmp_path / "nothing"),
                "--in",
                data[0],
                "--out",
                str(tmp_path / "e"),
            ]
        )
        == 2  # a missing --model is the user's mistake naming the input
    )
