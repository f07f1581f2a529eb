"""The training loops' CUDA branches: NNCLR with AMP and its grad scaler, the cINN fit."""

from __future__ import annotations

import math

import numpy as np
import pytest
import torch

from tests.gpu.conftest import GPU, REP_RTOL, row_relative_error

pytestmark = GPU

CUDA = torch.device("cuda")


@pytest.fixture(scope="module")
def toy(tmp_path_factory):
    from ergo_ray.io.prepared import discover_inputs
    from ergo_ray.mock.toy import write_toy_prepared_shards
    from ergo_ray.train.data import read_split

    root = tmp_path_factory.mktemp("toy")
    inputs = discover_inputs(write_toy_prepared_shards(str(root), 50, size=24, seed=1))
    return {
        "train": read_split(inputs, split="train", columns=("image",))["image"],
        "val": read_split(inputs, split="val"),
        "monitor": read_split(inputs, split="train", max_rows=60),
    }


@pytest.fixture
def clr_config():
    from ergo_ray.config.loader import load_config
    from ergo_ray.train.clr_loop import loop_config

    cfg = load_config(
        "ci", overrides=["clr.max_batches_per_epoch=3", "clr.batch_size=8"]
    )
    return loop_config(
        cfg, in_size=24, preprocess=cfg.preprocess.model_dump(mode="json"), out="unused"
    )


def test_nnclr_trainer_on_cuda_uses_amp_and_resumes(toy, clr_config, tmp_path):
    from ergo_ray.train import checkpoint as ckpt
    from ergo_ray.train.clr_loop import train_local
    from ergo_ray.train.clr_trainer import ClrTrainer

    cpu = ClrTrainer(clr_config, torch.device("cpu"))
    gpu = ClrTrainer(clr_config, CUDA)
    assert gpu.use_amp and gpu.scaler.is_enabled() and not cpu.use_amp
    # same seeded initial weights: the autocast validation forward matches the CPU's
    batches = [
        (toy["val"]["image"], {k: v for k, v in toy["val"].items() if k != "image"})
    ]
    _, rep_cpu, _ = cpu.validate(batches, torch.Generator().manual_seed(0), 0)
    _, rep_gpu, _ = gpu.validate(
        batches, torch.Generator(device=CUDA).manual_seed(0), 0
    )
    assert rep_gpu.device.type == "cuda" and rep_gpu.dtype == torch.float32
    assert row_relative_error(rep_gpu.cpu().numpy(), rep_cpu.numpy()).max() < REP_RTOL

    # one whole epoch on CUDA (device generators, scaled steps, k-NN monitor on the device)
    before = {k: v.detach().clone() for k, v in gpu.model.state_dict().items()}
    trainer, history = train_local(
        clr_config, toy["train"], toy["val"], toy["monitor"], device="cuda", epochs=1
    )
    h = history[0]
    assert math.isfinite(h["train_loss"]) and math.isfinite(h["val_loss"])
    assert all(math.isfinite(h[k]) for k in h if k.startswith("knn_r2_"))
    assert h["train_images"] == 3 * 8
    after = trainer.model.state_dict()
    assert any(
        not torch.equal(before[k], after[k])
        for k in before
        if after[k].is_floating_point()
    )
    assert int(trainer.criterion.bank.bank_ptr) == 3 * 8  # one epoch of 3 batches of 8

    # the state (with the grad scaler's) restores into a fresh CUDA trainer
    state = trainer.state(0)
    assert state["scaler"]["scale"] > 0
    ckpt.save_training_state(str(tmp_path), state)
    fresh = ClrTrainer(clr_config, CUDA)
    assert (
        fresh.load(ckpt.load_training_state(str(tmp_path)), source=str(tmp_path)) == 1
    )
    assert fresh.scaler.get_scale() == trainer.scaler.get_scale()
    for a, b in zip(
        trainer.model.state_dict().values(),
        fresh.model.state_dict().values(),
        strict=True,
    ):
        assert torch.equal(a, b)


def test_cinn_fit_on_cuda_follows_the_cpu_fit():
    from ergo_ray.config.loader import load_config
    from ergo_ray.models.cinn import CinnArch
    from ergo_ray.train.cinn_fit import fit_cinn, loop_config

    cfg = load_config("ci", overrides=["cinn.epochs=2", "cinn.batch_size=64"])
    g = torch.Generator().manual_seed(0)
    c = torch.randn(512, 10, generator=g)
    x = torch.stack([c[:, 0] * 0.8, torch.sin(c[:, 1]), c[:, 2] * c[:, 3]], 1)
    x = x + 0.1 * torch.randn(x.shape, generator=g)
    config = loop_config(cfg, CinnArch.from_config(cfg.cinn, 10), seed=1)
    train, val = (x[:400], c[:400]), (x[400:], c[400:])
    states = []
    model_cpu, st_cpu = fit_cinn(
        train, val, config, on_epoch=lambda m, s: states.append(s)
    )
    model_gpu, st_gpu = fit_cinn(train, val, config, device=CUDA)
    assert next(model_gpu.parameters()).is_cuda
    assert len(st_gpu["history"]) == len(st_cpu["history"]) == 2
    # same batches and label noise (CPU generator) on both devices: the same losses
    for a, b in zip(st_gpu["history"], st_cpu["history"], strict=True):
        assert a["train_nll"] == pytest.approx(b["train_nll"], rel=1e-3, abs=1e-3)
        assert a["val_nll"] == pytest.approx(b["val_nll"], rel=1e-3, abs=1e-3)
    with torch.no_grad():
        nll_gpu = model_gpu.nll(val[0].to(CUDA), val[1].to(CUDA)).cpu().numpy()
        nll_cpu = model_cpu.nll(*val).numpy()
    np.testing.assert_allclose(nll_gpu, nll_cpu, rtol=1e-2, atol=1e-2)
    # a CPU state resumes on CUDA
    resumed, st_res = fit_cinn(
        train, val, {**config, "epochs": 3}, state=states[-1], device=CUDA
    )
    assert [h["epoch"] for h in st_res["history"]] == [0, 1, 2]
    assert next(resumed.parameters()).is_cuda
