"""train-nnclr on a real local Ray instance: 2 gloo workers, S3 checkpoints, resume, retry."""

from __future__ import annotations

import io
import math

import pytest
import torch

from ergo_ray.cli.main import main
from ergo_ray.config.loader import load_config
from ergo_ray.io import storage as st
from ergo_ray.mock.toy import write_toy_prepared_shards
from ergo_ray.train.checkpoint import load_encoder, read_metrics
from ergo_ray.train.data import MONITOR_TARGETS

pytestmark = [pytest.mark.ray, pytest.mark.slow]

SETTINGS = ["clr.batch_size=8", "clr.max_batches_per_epoch=2", "clr.monitor_rows=48",
            "clr.memory_bank_size=64", "preprocess.size=16"]


@pytest.fixture(scope="module")
def toy(tmp_path_factory):
    root = tmp_path_factory.mktemp("nnclr-toy")
    return write_toy_prepared_shards(str(root), 40, size=16, rows_per_file=20, seed=2,
                                     domains=("tng100", "hsc"))


class FailOnce:
    """``after_epoch`` hook: rank 0 raises once after ``epoch`` (a marker in storage says so)."""

    def __init__(self, epoch, marker, storage):
        self.epoch, self.marker, self.storage = epoch, marker, storage

    def __call__(self, epoch, rank):
        if rank != 0 or epoch != self.epoch or st.exists(self.marker, self.storage):
            return
        st.write_bytes(self.marker, b"failed once\n", self.storage)
        msg = f"injected worker failure after epoch {epoch}"
        raise RuntimeError(msg)


def _sets():
    return [a for s in SETTINGS for a in ("--set", s)]


def test_two_workers_checkpoint_to_s3_resume_and_retry(ray_session, toy, bucket, s3_overrides,
                                                       storage_cfg):
    from ergo_ray.train.nnclr_stage import fit_nnclr

    out = f"s3://{bucket}/nnclr-run"
    argv = ["train-nnclr", "--preset", "ci", "--data", *toy, "--out", out, "--workers", "2",
            *_sets(), *s3_overrides]
    assert main([*argv, "--epochs", "1"]) == 0
    rows = read_metrics(st.join(out, "metrics.jsonl"), storage_cfg)
    assert [r["epoch"] for r in rows] == [0]
    assert rows[0]["world_size"] == 2 and rows[0]["train_images"] == 2 * 2 * 8
    # "global" support set: identical banks on both ranks (documented semantics)
    assert rows[0]["support_set_max_diff"] == 0.0
    # the k-NN monitor scored every target that has truth (NaN would mean no usable rows)
    for target in MONITOR_TARGETS:
        assert math.isfinite(rows[0][f"knn_r2_{target}"]), target

    # the checkpoint on S3 loads with weights_only=True and holds the support set
    fs, path = st.fsspec_fs(st.join(out, "nnclr"), storage_cfg)
    states = sorted(p for p in fs.find(path) if p.endswith("state.pt"))
    assert states and "epoch_0000" in states[-1]
    state = torch.load(io.BytesIO(fs.cat_file(states[-1])), weights_only=True)
    assert state["epoch"] == 0 and state["support_set"]["mode"] == "global"
    assert state["support_set"]["bank"].shape == (1, 64, 32)
    assert int(state["support_set"]["ptr"][0]) == 2 * 2 * 8  # both ranks' batches enqueued
    assert {"model", "optimizer", "scheduler", "scaler", "config"} <= set(state)

    encoder, meta = load_encoder(out, storage_cfg)
    assert meta["in_size"] == 16 and meta["epoch"] == 0
    assert encoder(torch.rand(2, 3, 16, 16)).shape == (2, 256)

    # The same run asked for 3 epochs continues at epoch 1 rather than restarting; a worker
    # that fails after epoch 1 is retried by Ray Train from the epoch-1 checkpoint.
    cfg = load_config("ci", overrides=[*SETTINGS, *s3_overrides[1::2]])
    marker = f"s3://{bucket}/failed-once"
    summary = fit_nnclr(cfg, data=toy, out=out, workers=2, epochs=3,
                        extra_config={"after_epoch": FailOnce(1, marker, storage_cfg)})
    assert st.exists(marker, storage_cfg)  # the failure happened
    rows = read_metrics(st.join(out, "metrics.jsonl"), storage_cfg)
    assert [r["epoch"] for r in rows] == [0, 1, 2]
    assert rows[1]["resumed_at_epoch"] == 1  # the second command resumed
    assert rows[2]["resumed_at_epoch"] == 2  # the retried worker group resumed
    assert summary["epochs"] == 3
    assert load_encoder(out, storage_cfg)[1]["epoch"] == 2


def test_bad_input_is_a_one_line_error(tmp_path, capsys):
    rc = main(["train-nnclr", "--preset", "ci", "--data", str(tmp_path / "missing"),
               "--out", str(tmp_path / "out")])
    assert rc == 2
    err = capsys.readouterr().err
    assert "missing" in err and "Traceback" not in err
