from __future__ import annotations

import math

import numpy as np
import pytest
import torch

from ergo_ray.config.loader import load_config
from ergo_ray.errors import CheckpointError
from ergo_ray.io.prepared import discover_inputs
from ergo_ray.mock.toy import write_toy_prepared_shards
from ergo_ray.preprocess.augment import augment_batch as _augment_batch
from ergo_ray.train import checkpoint as ckpt
from ergo_ray.train.clr_loop import loop_config, train_local
from ergo_ray.train.clr_trainer import ClrTrainer, augment_views
from ergo_ray.train.data import read_split


@pytest.fixture(scope="module")
def toy(tmp_path_factory):
    root = tmp_path_factory.mktemp("toy")
    inputs = discover_inputs(write_toy_prepared_shards(str(root), 50, size=24, seed=1))
    return {
        "train": read_split(inputs, split="train", columns=("image",))["image"],
        "val": read_split(inputs, split="val"),
        "monitor": read_split(inputs, split="train", max_rows=60),
    }


@pytest.fixture
def config():
    cfg = load_config("ci", overrides=["clr.max_batches_per_epoch=3", "clr.batch_size=8"])
    return loop_config(cfg, in_size=24, preprocess=cfg.preprocess.model_dump(mode="json"),
                       out="unused")


def test_augmentations_are_random_per_view_and_keep_shape():
    g = torch.Generator().manual_seed(0)
    x = torch.zeros(4, 3, 16, 16, dtype=torch.uint8)
    x[:, :, 6:10, 6:10] = 200
    params = load_config("ci").clr.augment.model_dump()
    v0, v1 = augment_views(x, g, params)
    assert v0.shape == (4, 3, 16, 16) and v0.dtype == torch.float32
    assert not torch.allclose(v0, v1)
    # no augmentation at all is the identity
    none = dict(rotation_deg=0, translate=0, zoom_min=1, zoom_max=1, flips=False,
                blur_sigma_min=0, blur_sigma_max=0, noise_sigma_min=0, noise_sigma_max=0)
    same = _augment_batch(x.float() / 255, g, **none)
    assert torch.allclose(same, x.float() / 255, atol=1e-5)
    # a flip-only augmentation keeps the flux
    flipped = _augment_batch(x.float() / 255, g, **(none | {"flips": True}))
    assert torch.allclose(flipped.sum(), (x.float() / 255).sum(), rtol=1e-4)


def test_local_loop_trains_and_reports_metrics(toy, config):
    trainer, history = train_local(config, toy["train"], toy["val"], toy["monitor"], epochs=2)
    assert [h["epoch"] for h in history] == [0, 1]
    for h in history:
        assert math.isfinite(h["train_loss"]) and math.isfinite(h["val_loss"])
        assert h["train_images"] == 3 * 8 and h["world_size"] == 1
        assert h["support_set_max_diff"] == 0.0
        assert set(k for k in h if k.startswith("knn_r2_")) == {
            "knn_r2_log_mstar", "knn_r2_true_exsitu_frac", "knn_r2_redshift"}
    # the toy images encode stellar mass plainly: the monitor sees it
    assert history[-1]["knn_r2_log_mstar"] > 0.5
    # the support set was filled with training projections
    assert int(trainer.criterion.bank.bank_ptr) == 2 * 3 * 8


def test_state_round_trip_resumes_exactly(toy, config, tmp_path):
    trainer, _ = train_local(config, toy["train"], toy["val"], toy["monitor"], epochs=1)
    ckpt.save_training_state(str(tmp_path), trainer.state(0))
    state = ckpt.load_training_state(str(tmp_path))  # weights_only=True
    assert state["support_set"]["bank"].shape == (1, 64, 32)
    fresh = ClrTrainer(config, torch.device("cpu"))
    assert fresh.load(state, source=str(tmp_path)) == 1
    for a, b in zip(trainer.model.state_dict().values(), fresh.model.state_dict().values(),
                    strict=True):
        assert torch.equal(a, b)
    assert torch.equal(fresh.criterion.bank.bank, trainer.criterion.bank.bank)
    fresh_state = fresh.optimizer.state_dict()["state"]
    assert fresh_state.keys() == trainer.optimizer.state_dict()["state"].keys()
    other = dict(config, clr=dict(config["clr"], widths=[4, 8]))
    with pytest.raises(CheckpointError, match=r"clr\.widths"):
        ClrTrainer(other, torch.device("cpu")).load(state, source="ck")


def test_validate_returns_clean_representations_with_targets(toy, config):
    trainer = ClrTrainer(config, torch.device("cpu"))
    g = torch.Generator().manual_seed(0)
    batches = [(toy["val"]["image"], {k: v for k, v in toy["val"].items() if k != "image"})]
    _, rep, targets = trainer.validate(batches, g, n_loss_batches=0)
    assert rep.shape == (len(toy["val"]["image"]), 256)
    assert np.array_equal(targets["log_mstar"], toy["val"]["log_mstar"])


def test_shuffle_window_yields_every_row_once_in_full_batches():
    from ergo_ray.train.clr_loop import _mixed

    rows = np.arange(40 * 12).reshape(40, 3, 2, 2)
    window = [rows[i : i + 8] for i in range(0, 40, 8)]
    first = list(_mixed(window, 8, np.random.default_rng(3)))
    again = list(_mixed(window, 8, np.random.default_rng(3)))
    assert [b.shape for b in first] == [(8, 3, 2, 2)] * 5
    got = np.concatenate(first)
    assert sorted(got[:, 0, 0, 0].tolist()) == sorted(rows[:, 0, 0, 0].tolist())
    assert not np.array_equal(got, rows)  # mixed across the input batches
    assert all(np.array_equal(a, b) for a, b in zip(first, again, strict=True))  # seeded
