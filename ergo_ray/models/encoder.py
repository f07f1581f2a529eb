"""The image encoder: a residual network for small galaxy stamps and a representation head.

The authors of the method (method.md §3.1) use an E(2)-equivariant Wide-ResNet; we use
torchvision's ``BasicBlock`` residual blocks, adapted to small stamps the way CIFAR ResNets
are: a 3×3 stem convolution and no max-pool, so that a 24–32 px stamp keeps its spatial
detail into the first stage. After the last stage a global average pool and a
``Linear(·, rep_dim)`` give the backbone feature, followed by the method's representation
head, 2 × [ReLU → Linear(rep_dim, rep_dim)]. Its output is the representation used by the
cINN, the OOD score and the UMAP figures.

Input: float32 (N, 3, S, S) in [0, 1], channels (i, r, g) — a prepared uint8 stamp divided
by 255. Output: float32 (N, rep_dim).
"""

from __future__ import annotations

from collections.abc import Sequence

import torch
from torch import nn
from torchvision.models.resnet import BasicBlock, conv1x1, conv3x3

__all__ = ["Encoder", "build_encoder"]

#: Stamps at least this large start with a stride-2 stem, as the method's network does for
#: its 128 px inputs (128 → 64 before the first stage); smaller stamps keep full resolution.
STRIDED_STEM_MIN_PX = 96


class Encoder(nn.Module):
    """Residual encoder mapping prepared stamps to representations.

    Parameters
    ----------
    widths : sequence of int
        Channels of each stage; the first stage keeps the stem's resolution, each later one
        halves it.
    blocks : sequence of int
        ``BasicBlock`` count per stage (same length as ``widths``).
    rep_dim : int
        Length of the representation.
    in_size : int
        Side of the square input stamps in pixels (recorded, and used to choose the stem
        stride; the network itself accepts any size thanks to the global pool).
    head_depth : int
        Number of [ReLU → Linear] layers in the representation head (the method uses 2).
    """

    def __init__(
        self,
        widths: Sequence[int],
        blocks: Sequence[int],
        rep_dim: int,
        in_size: int,
        *,
        head_depth: int = 2,
    ) -> None:
        super().__init__()
        self.widths = tuple(int(w) for w in widths)
        self.blocks = tuple(int(b) for b in blocks)
        self.rep_dim = int(rep_dim)
        self.in_size = int(in_size)
        stem_stride = 2 if self.in_size >= STRIDED_STEM_MIN_PX else 1
        self.stem = nn.Sequential(
            conv3x3(3, self.widths[0], stride=stem_stride),
            nn.BatchNorm2d(self.widths[0]),
            nn.ReLU(inplace=True),
        )
        stages: list[nn.Module] = []
        in_ch = self.widths[0]
        for i, (width, n_blocks) in enumerate(zip(self.widths, self.blocks, strict=True)):
            stride = 1 if i == 0 else 2
            stages.append(_stage(in_ch, width, n_blocks, stride))
            in_ch = width
        self.stages = nn.Sequential(*stages)
        self.pool = nn.AdaptiveAvgPool2d(1)
        self.fc = nn.Linear(in_ch, self.rep_dim)
        head: list[nn.Module] = []
        for _ in range(head_depth):
            head += [nn.ReLU(), nn.Linear(self.rep_dim, self.rep_dim)]
        self.head = nn.Sequential(*head)
        _init_weights(self)

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        """Return the (N, rep_dim) representation of (N, 3, S, S) stamps in [0, 1]."""
        h = self.stages(self.stem(x))
        h = torch.flatten(self.pool(h), 1)
        return self.head(self.fc(h))  # type: ignore[no-any-return]


def _stage(in_ch: int, width: int, n_blocks: int, stride: int) -> nn.Sequential:
    downsample = None
    if stride != 1 or in_ch != width:
        downsample = nn.Sequential(conv1x1(in_ch, width, stride), nn.BatchNorm2d(width))
    layers = [BasicBlock(in_ch, width, stride=stride, downsample=downsample)]
    layers += [BasicBlock(width, width) for _ in range(1, n_blocks)]
    return nn.Sequential(*layers)


def _init_weights(model: nn.Module) -> None:
    # torchvision's ResNet initialisation, with the last BN of each residual branch set to
    # zero so that every block starts as the identity (Goyal et al. 2017): small CPU runs of
    # a few hundred steps train noticeably faster with it.
    for m in model.modules():
        if isinstance(m, nn.Conv2d):
            nn.init.kaiming_normal_(m.weight, mode="fan_out", nonlinearity="relu")
        elif isinstance(m, nn.BatchNorm2d):
            nn.init.ones_(m.weight)
            nn.init.zeros_(m.bias)
    for m in model.modules():
        if isinstance(m, BasicBlock) and m.bn2.weight is not None:
            nn.init.zeros_(m.bn2.weight)


def build_encoder(
    widths: Sequence[int], blocks: Sequence[int], rep_dim: int, in_size: int
) -> Encoder:
    """Build the encoder of the configured size.

    Parameters
    ----------
    widths : sequence of int
        Channels per stage (``cfg.clr.widths``).
    blocks : sequence of int
        Residual blocks per stage (``cfg.clr.blocks``), same length as ``widths``.
    rep_dim : int
        Representation length (``cfg.clr.rep_dim``, 256 in every preset).
    in_size : int
        Side of the prepared input stamps in pixels.

    Returns
    -------
    Encoder
        A module mapping float32 (N, 3, in_size, in_size) in [0, 1] to (N, rep_dim).

    Raises
    ------
    ValueError
        If ``widths`` and ``blocks`` are empty, differ in length, or hold non-positive values.
    """
    widths, blocks = tuple(widths), tuple(blocks)
    if not widths or len(widths) != len(blocks):
        msg = f"widths {widths} and blocks {blocks} must be non-empty and of equal length"
        raise ValueError(msg)
    if min(widths) < 1 or min(blocks) < 1 or rep_dim < 1 or in_size < 1:
        msg = f"encoder sizes must be positive: widths={widths} blocks={blocks} " \
              f"rep_dim={rep_dim} in_size={in_size}"
        raise ValueError(msg)
    return Encoder(widths, blocks, rep_dim, in_size)
