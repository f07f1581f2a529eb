from __future__ import annotations

import pytest
import torch

from ergo_ray.models.encoder import Encoder, build_encoder


@pytest.mark.parametrize(("size", "widths", "blocks"), [
    (24, (8, 16), (1, 1)),
    (32, (16, 32, 64), (1, 1, 1)),
    (128, (8, 8, 16, 16), (2, 1, 1, 1)),
])
def test_maps_stamps_to_representations(size, widths, blocks):
    torch.manual_seed(0)
    enc = build_encoder(widths, blocks, 256, size).eval()
    x = torch.rand(3, 3, size, size)
    with torch.no_grad():
        rep = enc(x)
    assert rep.shape == (3, 256)
    assert torch.isfinite(rep).all()
    # distinct images give distinct representations
    assert (rep[0] - rep[1]).abs().max() > 1e-6
    assert enc.in_size == size and enc.widths == tuple(widths)


def test_stem_keeps_small_stamps_at_full_resolution():
    small = build_encoder((8,), (1,), 16, 32)
    large = build_encoder((8,), (1,), 16, 128)
    assert small.stem[0].stride == (1, 1)
    assert large.stem[0].stride == (2, 2)
    # no max-pool anywhere
    assert not any(isinstance(m, torch.nn.MaxPool2d) for m in small.modules())


def test_size_follows_config():
    small = build_encoder((8, 16), (1, 1), 256, 32)
    big = build_encoder((16, 32, 64), (2, 2, 2), 256, 32)
    assert len(small.stages) == 2 and len(big.stages) == 3
    assert [len(s) for s in big.stages] == [2, 2, 2]
    n_small = sum(p.numel() for p in small.stages.parameters())
    n_big = sum(p.numel() for p in big.stages.parameters())
    assert n_big > 20 * n_small


def test_representation_head_is_two_relu_linear_layers():
    enc = build_encoder((8, 16), (1, 1), 64, 32)
    kinds = [type(m).__name__ for m in enc.head]
    assert kinds == ["ReLU", "Linear", "ReLU", "Linear"]
    assert enc.fc.out_features == 64 and isinstance(enc, Encoder)


@pytest.mark.parametrize(("widths", "blocks"), [((8, 16), (1,)), ((), ()), ((8, 0), (1, 1))])
def test_bad_sizes_raise(widths, blocks):
    with pytest.raises(ValueError, match=r"widths|positive"):
        build_encoder(widths, blocks, 256, 32)
