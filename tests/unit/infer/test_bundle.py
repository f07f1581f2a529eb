"""Model bundle: writing, verified loading, sampling, representations, tampering, S3."""

from __future__ import annotations

import json
import shutil
from pathlib import Path

import numpy as np
import pytest
import torch

import ergo_ray
from ergo_ray.config.loader import load_config
from ergo_ray.errors import BadObjectError, CheckpointError, InputError
from ergo_ray.io.schemas import posterior_summary_columns
from ergo_ray.models.cinn import CinnArch, object_seeds
from ergo_ray.models.encoder import build_encoder
from ergo_ray.models.targets import Standardizer, TargetTransform, encode_truth
from ergo_ray.shared import bundle_format as bd
from ergo_ray.shared.bundle_format import bundle_files
from ergo_ray.shared.ood_score import build_reference
from ergo_ray.train.checkpoint import export_encoder, load_encoder
from ergo_ray.train.cinn_fit import fit_cinn, loop_config

SIZE = 24


def raw_cutouts(n: int, seed: int = 0, side: int = 64) -> np.ndarray:
    """Exponential-disc galaxies on a noisy sky, bands g, r, i in ZP-27 flux units."""
    rng = np.random.default_rng(seed)
    yy, xx = np.mgrid[0:side, 0:side] - (side - 1) / 2
    out = np.empty((n, 3, side, side), np.float32)
    for i in range(n):
        r_e = rng.uniform(2.5, 5.0)
        q, th = rng.uniform(0.5, 1), rng.uniform(0, np.pi)
        xr = xx * np.cos(th) + yy * np.sin(th)
        yr = (-xx * np.sin(th) + yy * np.cos(th)) / q
        prof = np.exp(-1.68 * np.hypot(xr, yr) / r_e)
        for b, amp in enumerate((300.0, 500.0, 650.0)):
            out[i, b] = amp * prof + rng.normal(0, 3.0, (side, side))
    return out


def _images(n: int, seed: int) -> np.ndarray:
    rng = np.random.default_rng(seed)
    return rng.integers(0, 256, (n, 3, SIZE, SIZE), dtype=np.uint8)


def _write(url: str, tmp, storage=None, baseline: bool = True,
           observables: tuple[str, ...] = ()) -> str:
    cfg = load_config("ci")
    torch.manual_seed(0)
    enc = build_encoder(cfg.clr.widths, cfg.clr.blocks, 256, SIZE)
    enc_file = tmp / "encoder.pt"
    export_encoder(
        str(enc_file),
        enc,
        clr=cfg.clr.model_dump(mode="json"),
        preprocess=cfg.preprocess.model_dump(mode="json"),
        in_size=SIZE,
        rep_dim=256,
    )
    with torch.no_grad():
        reps = enc.eval()(torch.from_numpy(_images(120, 1)).float() / 255).numpy()
    rng = np.random.default_rng(2)
    lm, z = rng.uniform(9, 12, 120), rng.uniform(0.1, 0.4, 120)
    lb = np.where(rng.random(120) < 0.3, np.nan, rng.uniform(0.5, 12, 120))
    y, _ = encode_truth(rng.uniform(0, 1, 120), lb, lm - 1)
    tt = TargetTransform.fit(y, "logit")
    ys = np.asarray(tt.forward(y), np.float32)
    mag = rng.uniform(15, 20, 120)
    extra = {"redshift": z, "i_mag": mag}
    cond = np.concatenate([reps, *(extra[c][:, None] for c in observables)], 1)
    sc = Standardizer.fit(cond)
    config = loop_config(cfg, CinnArch.from_config(cfg.cinn, cond.shape[1]), seed=0,
                         cond_scaling=(sc.mean, sc.scale))
    cond = np.asarray(cond, np.float32)
    model, _ = fit_cinn((torch.from_numpy(ys), torch.from_numpy(cond)), None, config)
    files = {
        "encoder.pt": enc_file.read_bytes(),
        "cinn.pt": bd.torch_bytes(model.payload()),
    }
    scaler = None
    if baseline:
        scaler = Standardizer.fit(np.stack([lm, z], 1))
        cond = np.asarray(scaler.forward(np.stack([lm, z], 1)), np.float32)
        cfg_b = loop_config(cfg, CinnArch.from_config(cfg.cinn, 2), seed=0)
        bmodel, _ = fit_cinn(
            (torch.from_numpy(ys), torch.from_numpy(cond)), None, cfg_b
        )
        files["baseline.pt"] = bd.torch_bytes(bmodel.payload())
    ood = build_reference(reps, n_reference=cfg.cinn.n_ood_reference, k=cfg.ood.k)
    run_cfg = cfg.model_copy(
        update={"preprocess": cfg.preprocess.model_copy(update={"size": SIZE})}
    )
    files |= bundle_files(
        transform=tt,
        run_cfg=run_cfg,
        ood=ood,
        metrics={"test": {"n": 0, "nan_value": float("nan")}},
        input_size=SIZE,
        rep_dim=256,
        observables=observables,
        baseline_scaler=scaler,
    )
    return bd.write_bundle(url, files, storage)


@pytest.fixture(scope="module")
def bundle_dir(tmp_path_factory):
    tmp = tmp_path_factory.mktemp("bundle")
    url = str(tmp / "model")
    model_id = _write(url, tmp)
    return url, model_id


def test_a_bundle_with_observables_needs_and_uses_them(tmp_path):
    url = str(tmp_path / "model")
    _write(url, tmp_path, baseline=False, observables=("redshift", "i_mag"))
    b = ergo_ray.load_model(url)
    assert b.observables == ("redshift", "i_mag")
    imgs = _images(5, 3)
    z, mag = np.array([0.1, 0.2, 0.3, 0.35, 0.15]), np.array([17.0, 18, 19, 16.5, 18.2])
    with pytest.raises(InputError, match=r"conditioned on redshift, i_mag.*missing i_mag"):
        b.sample_posterior(imgs, 20, observables={"redshift": z})
    with pytest.raises(InputError, match="'i_mag' has 3 values for 5 objects"):
        b.sample_posterior(imgs, 20, observables={"redshift": z, "i_mag": mag[:3]})
    obs = {"redshift": z, "i_mag": mag, "unused": np.zeros(2)}
    a = b.sample_posterior(imgs, 20, seed=1, observables=obs)
    assert a.shape == (5, 20, 3) and np.isfinite(a).all()
    cond = b.condition(b.represent(imgs), obs)
    assert cond.shape == (5, 258)
    np.testing.assert_allclose(cond[:, 256:], np.stack([z, mag], 1), rtol=1e-6)
    assert np.array_equal(a, b.sample_condition(cond, 20, seed=1))
    # the observables are part of the condition: other values, another posterior
    for name in ("redshift", "i_mag"):
        moved = {**obs, name: obs[name] + 0.5}
        assert not np.array_equal(a, b.sample_posterior(imgs, 20, seed=1, observables=moved))
    mag[2] = np.nan
    with pytest.raises(BadObjectError, match="representation, redshift, i_mag") as err:
        b.sample_posterior(imgs, 20, seed=1, observables=obs)
    assert err.value.reason == "nonfinite_condition"
    with pytest.raises(InputError, match=r"expected conditions \(N, 258\)"):
        b.sample_condition(cond[:, :256], 20)


def test_load_and_sample_reproducibly(bundle_dir):
    url, model_id = bundle_dir
    b = ergo_ray.load_model(url)
    assert b.model_id == model_id and b.input_size == SIZE and b.has_baseline
    assert b.device.type in ("cpu", "cuda")
    assert b.metrics["test"]["nan_value"] is None  # strict JSON
    reps = b.represent(_images(6, 3))
    assert reps.shape == (6, 256) and reps.dtype == np.float32
    a = b.sample_posterior(reps, 40, seed=5)
    assert a.shape == (6, 40, 3) and a.dtype == np.float32
    assert np.array_equal(a, b.sample_posterior(reps, 40, seed=5))
    assert not np.array_equal(a, b.sample_posterior(reps, 40, seed=6))
    assert (
        (a[..., 0] > 0) & (a[..., 0] < 1)
    ).all()  # logit transform keeps fractions in (0, 1)
    # Per-object seeds: an object's samples do not depend on its batch.
    seeds = object_seeds([f"g{i}" for i in range(6)], 1)
    full = b.sample_posterior(reps, 40, seeds=seeds)
    assert np.array_equal(
        full[2:4], b.sample_posterior(reps[2:4], 40, seeds=seeds[2:4])
    )
    # Images go through represent() first.
    assert np.allclose(b.sample_posterior(_images(6, 3), 40, seed=5), a, atol=1e-5)
    summ = b.summarize(a)
    assert list(summ) == list(posterior_summary_columns())
    assert all(v.shape == (6,) for v in summ.values())
    ood = b.ood_score(reps)
    assert ood.shape == (6,) and np.isfinite(ood).all()
    base = b.baseline_sample(np.array([10.0, 11.0]), np.array([0.2, 0.3]), 30, seed=1)
    assert base.shape == (2, 30, 3) and np.isfinite(base).all()


def test_raw_cutouts_are_prepared_with_bundle_settings(bundle_dir):
    b = ergo_ray.load_model(bundle_dir[0])
    raw = raw_cutouts(3)
    prepared = b.prepare(raw)
    assert prepared.shape == (3, 3, SIZE, SIZE) and prepared.dtype == np.uint8
    assert np.array_equal(b.represent(raw), b.represent(prepared))
    with pytest.raises(InputError, match=f"3, {SIZE}, {SIZE}"):
        b.represent(np.zeros((2, 3, SIZE + 1, SIZE + 1), np.uint8))
    with pytest.raises(InputError, match="representations"):
        b.sample_posterior(np.zeros((2, 7), np.float32), 10)
    with pytest.raises(InputError, match="seeds"):
        b.sample_posterior(np.zeros((2, 256), np.float32), 10, seeds=np.array([1]))


def test_encoder_is_the_nnclr_export(bundle_dir):
    enc, meta = load_encoder(bundle_dir[0])
    b = ergo_ray.load_model(bundle_dir[0])
    imgs = _images(4, 9)
    with torch.no_grad():
        direct = enc(torch.from_numpy(imgs).float() / 255).numpy()
    assert meta["in_size"] == SIZE
    assert np.allclose(direct, b.represent(imgs), atol=1e-5)


def test_tampered_weights_are_rejected(bundle_dir, tmp_path):
    copy = tmp_path / "tampered"
    shutil.copytree(bundle_dir[0], copy)
    data = bytearray((copy / "cinn.pt").read_bytes())
    data[len(data) // 2] ^= 0xFF
    (copy / "cinn.pt").write_bytes(bytes(data))
    with pytest.raises(
        CheckpointError, match=r"cinn\.pt: sha256 .* does not match the manifest"
    ):
        ergo_ray.load_model(str(copy))


def test_incomplete_or_forged_bundles_are_rejected(bundle_dir, tmp_path):
    copy = tmp_path / "b"
    shutil.copytree(bundle_dir[0], copy)
    (copy / "reference.npy").unlink()
    with pytest.raises(CheckpointError, match=r"reference\.npy is missing"):
        ergo_ray.load_model(str(copy))
    (copy / "manifest.json").unlink()
    with pytest.raises(InputError, match="not a model bundle"):
        ergo_ray.load_model(str(copy))

    forged = tmp_path / "forged"
    shutil.copytree(bundle_dir[0], forged)
    man = json.loads((forged / "manifest.json").read_text())
    man["model_id"] = "0" * 16
    (forged / "manifest.json").write_text(json.dumps(man))
    with pytest.raises(CheckpointError, match="model_id does not match"):
        ergo_ray.load_model(str(forged))


class _Payload:
    """Not a plain tensor dict: weights_only loading must refuse it."""


def test_pickled_code_is_never_loaded(bundle_dir, tmp_path):
    """Even with a re-signed manifest, a file that needs unpickling of code is refused."""
    src = tmp_path / "src"
    shutil.copytree(bundle_dir[0], src)
    files = {p.name: p.read_bytes() for p in src.iterdir() if p.name != "manifest.json"}
    files["cinn.pt"] = bd.torch_bytes({"arch": {}, "state_dict": _Payload()})
    bd.write_bundle(str(tmp_path / "evil"), files)
    with pytest.raises(CheckpointError, match="weights_only"):
        ergo_ray.load_model(str(tmp_path / "evil"))


def test_bundle_without_baseline(tmp_path):
    _write(str(tmp_path / "nb"), tmp_path, baseline=False)
    b = ergo_ray.load_model(str(tmp_path / "nb"))
    assert not b.has_baseline
    with pytest.raises(CheckpointError, match="no baseline"):
        b.baseline_sample(np.array([10.0]), np.array([0.2]), 5)


@pytest.mark.s3
def test_s3_round_trip_identical_samples(bundle_dir, bucket, storage_cfg, tmp_path):
    local = ergo_ray.load_model(bundle_dir[0])
    src = Path(bundle_dir[0])
    names = json.loads((src / "manifest.json").read_text())["files"]
    files = {p: (src / p).read_bytes() for p in names}
    url = f"s3://{bucket}/models/m1"
    assert bd.write_bundle(url, files, storage_cfg) == local.model_id
    remote = ergo_ray.load_model(url, storage=storage_cfg)
    reps = local.represent(_images(5, 11))
    assert np.array_equal(remote.represent(_images(5, 11)), reps)
    assert np.array_equal(
        remote.sample_posterior(reps, 25, seed=3),
        local.sample_posterior(reps, 25, seed=3),
    )


def test_catalog_driver_names_a_bundle_with_invalid_metadata(bundle_dir, tmp_path):
    import hashlib

    from ergo_ray.infer.pipeline import _bundle_info

    copy = tmp_path / "b"
    shutil.copytree(bundle_dir[0], copy)
    assert _bundle_info(str(copy), None)[1] == SIZE
    tr = json.loads((copy / "transforms.json").read_text())
    del tr["input_size"]
    data = json.dumps(tr).encode()
    (copy / "transforms.json").write_bytes(data)
    manifest = json.loads((copy / "manifest.json").read_text())
    manifest["files"]["transforms.json"] = {"sha256": hashlib.sha256(data).hexdigest(),
                                            "bytes": len(data)}
    manifest["model_id"] = bd._model_id({n: f["sha256"] for n, f in manifest["files"].items()})
    (copy / "manifest.json").write_text(json.dumps(manifest))
    with pytest.raises(CheckpointError, match=r"b: bundle metadata is invalid: .*input_size"):
        _bundle_info(str(copy), None)
