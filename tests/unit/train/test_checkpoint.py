from __future__ import annotations

import io

import pytest
import torch

from ergo_ray.errors import CheckpointError
from ergo_ray.models.encoder import build_encoder
from ergo_ray.train.checkpoint import (
    append_metrics,
    check_compatible,
    export_encoder,
    load_encoder,
    load_training_state,
    read_metrics,
    save_training_state,
)

CLR = {"widths": [8, 16], "blocks": [1, 1], "rep_dim": 32, "proj_dim": 8, "pred_hidden": 16,
       "memory_bank_size": 64, "temperature": 0.1}


def _export(url, **kw):
    torch.manual_seed(0)
    enc = build_encoder(CLR["widths"], CLR["blocks"], CLR["rep_dim"], 24)
    export_encoder(url, enc, clr=CLR, preprocess={"size": 24, "stretch": "log"}, in_size=24,
                   rep_dim=32, epoch=3, **kw)
    return enc.eval()


def test_encoder_round_trip_local(tmp_path):
    enc = _export(str(tmp_path / "encoder.pt"))
    loaded, meta = load_encoder(str(tmp_path))  # a folder finds its encoder.pt
    x = torch.rand(2, 3, 24, 24)
    with torch.no_grad():
        assert torch.allclose(loaded(x), enc(x))
    assert meta["in_size"] == 24 and meta["rep_dim"] == 32 and meta["epoch"] == 3
    assert meta["clr"]["widths"] == [8, 16] and meta["preprocess"]["stretch"] == "log"
    assert not loaded.training


def test_encoder_round_trip_s3(storage_cfg, bucket):
    url = f"s3://{bucket}/runs/nnclr/encoder.pt"
    enc = _export(url, storage=storage_cfg)
    loaded, _ = load_encoder(url, storage_cfg)
    x = torch.rand(2, 3, 24, 24)
    with torch.no_grad():
        assert torch.allclose(loaded(x), enc(x))


class _Payload:
    def __reduce__(self):
        return (print, ("code ran",))


def test_load_refuses_code_and_foreign_files(tmp_path):
    torch.save({"format": "ergo_ray.encoder", "state_dict": {}, "meta": _Payload()},
               tmp_path / "encoder.pt")
    with pytest.raises(CheckpointError, match="cannot load weights safely"):
        load_encoder(str(tmp_path / "encoder.pt"))
    torch.save({"weights": torch.zeros(2)}, tmp_path / "other.pt")
    with pytest.raises(CheckpointError, match="not an ergo_ray encoder"):
        load_encoder(str(tmp_path / "other.pt"))
    with pytest.raises(CheckpointError, match="cannot read"):
        load_encoder(str(tmp_path / "missing"))


def test_load_rejects_weights_of_another_architecture(tmp_path):
    url = str(tmp_path / "encoder.pt")
    _export(url)
    obj = torch.load(url, weights_only=True)
    obj["meta"]["clr"]["widths"] = [16, 16]
    buf = io.BytesIO()
    torch.save(obj, buf)
    (tmp_path / "encoder.pt").write_bytes(buf.getvalue())
    with pytest.raises(CheckpointError, match="do not match"):
        load_encoder(url)


def test_training_state_round_trip(tmp_path):
    state = {"epoch": 2, "model": {"w": torch.ones(3)}, "config": {"clr": CLR}}
    save_training_state(str(tmp_path), state)
    back = load_training_state(str(tmp_path))
    assert back["epoch"] == 2 and torch.equal(back["model"]["w"], torch.ones(3))
    with pytest.raises(CheckpointError, match="no NNCLR training state"):
        load_training_state(str(tmp_path / "nothing"))


def test_check_compatible_names_the_key():
    check_compatible(CLR, dict(CLR, epochs=9, lr=0.1), "ck")
    with pytest.raises(CheckpointError, match=r"clr\.proj_dim"):
        check_compatible(CLR, dict(CLR, proj_dim=16), "ck")


def test_metrics_file_keeps_one_row_per_epoch(tmp_path):
    url = str(tmp_path / "metrics.jsonl")
    assert read_metrics(url) == []
    for epoch, loss in [(0, 3.0), (1, 2.0), (1, 1.5), (2, 1.0)]:
        append_metrics(url, {"epoch": epoch, "loss": loss})
    append_metrics(url, {"epoch": 1, "loss": 1.2})  # a re-run epoch drops later rows
    assert [(r["epoch"], r["loss"]) for r in read_metrics(url)] == [(0, 3.0), (1, 1.2)]
