"""NNCLR (Dwibedi et al. 2021, arXiv:2104.14548) assembled from lightly's blocks.

Two modules, deliberately kept apart for data-parallel training (ray-2.60-notes §2.5):

* :class:`NNCLR` holds every trainable parameter: the encoder (representation), lightly's
  ``NNCLRProjectionHead`` and ``NNCLRPredictionHead``. Only this module is wrapped by DDP
  (``ray.train.torch.prepare_model``).
* :class:`NNCLRCriterion` holds the support set (lightly's ``NNMemoryBankModule``) and the
  NT-Xent loss. It has no parameters and stays outside DDP: DDP's default buffer broadcast
  would otherwise overwrite every rank's memory bank with rank 0's at each forward.

Loss: the symmetric NNCLR objective
``0.5 * (NTXent(NN(z0), p1) + NTXent(NN(z1), p0))`` where ``z`` are projections, ``p``
predictions and ``NN`` the nearest neighbour (cosine) in the support set, without gradient.
The NT-Xent loss gathers negatives from every worker (``gather_distributed=True``): with W
workers of n images each, every row is contrasted against all 2nW views, and the mean of the
per-worker losses equals the single-process loss on the concatenated batch.

Support-set semantics across workers (``support_set``):

``"global"``
    Every rank enqueues the all-gathered projections of all ranks (the bank's
    ``gather_distributed``), and the initial random bank is broadcast from rank 0, so all
    ranks hold **identical** banks of ``memory_bank_size`` entries, filled W times faster. The
    result does not depend on how many workers there are, apart from the fill rate. Use a
    ``memory_bank_size`` of at least W × batch. This is the default and what the method's
    single-GPU "BatchQueue" corresponds to.
``"per_worker"``
    Every rank enqueues only its own projections and the initial banks differ (seeded by
    rank): banks **differ** across ranks, each holding ``memory_bank_size`` entries of its
    own shard. No collective in the enqueue; more diverse support sets in total.

The memory bank is a non-persistent buffer in lightly (not in ``state_dict``):
:meth:`NNCLRCriterion.bank_state` and :meth:`NNCLRCriterion.load_bank_state` save and restore
it explicitly for checkpoints.
"""

from __future__ import annotations

from typing import Literal

import torch
import torch.distributed as dist
from lightly.loss import NTXentLoss
from lightly.models.modules import (
    NNCLRPredictionHead,
    NNCLRProjectionHead,
    NNMemoryBankModule,
)
from torch import nn

__all__ = ["NNCLR", "NNCLRCriterion", "SupportSet"]

SupportSet = Literal["global", "per_worker"]


class NNCLR(nn.Module):
    """Encoder plus NNCLR projection and prediction heads.

    Parameters
    ----------
    encoder : nn.Module
        Maps (N, 3, S, S) images to (N, rep_dim) representations
        (:func:`ergo_ray.models.encoder.build_encoder`).
    rep_dim : int
        Representation length (the projection head's input).
    proj_dim : int
        Projection length (the contrastive space and the support set's entries).
    pred_hidden : int
        Hidden width of the prediction head.
    """

    def __init__(self, encoder: nn.Module, *, rep_dim: int, proj_dim: int,
                 pred_hidden: int) -> None:
        super().__init__()
        self.encoder = encoder
        self.projection_head = NNCLRProjectionHead(rep_dim, rep_dim, proj_dim)
        self.prediction_head = NNCLRPredictionHead(proj_dim, pred_hidden, proj_dim)

    def forward(self, x: torch.Tensor) -> tuple[torch.Tensor, torch.Tensor, torch.Tensor]:
        """Return ``(representation, projection, prediction)`` for a batch of images."""
        rep = self.encoder(x)
        z = self.projection_head(rep)
        p = self.prediction_head(z)
        return rep, z, p


class NNCLRCriterion(nn.Module):
    """Support set (nearest-neighbour memory bank) plus the NT-Xent loss.

    Parameters
    ----------
    proj_dim : int
        Length of the projections stored in the support set.
    memory_bank_size : int
        Number of entries in the support set.
    temperature : float
        NT-Xent temperature.
    support_set : {"global", "per_worker"}
        How the support set behaves across data-parallel workers (see the module docstring).
    seed : int
        Seed of the initial random bank (offset by the rank for ``"per_worker"``).
    """

    def __init__(
        self,
        *,
        proj_dim: int,
        memory_bank_size: int,
        temperature: float,
        support_set: SupportSet = "global",
        seed: int = 0,
    ) -> None:
        super().__init__()
        if support_set not in ("global", "per_worker"):
            msg = f"support_set must be 'global' or 'per_worker', got {support_set!r}"
            raise ValueError(msg)
        self.support_set: SupportSet = support_set
        self.bank = NNMemoryBankModule(size=(memory_bank_size, proj_dim))
        # Read by MemoryBankModule._dequeue_and_enqueue: all-gather before the enqueue.
        self.bank.gather_distributed = support_set == "global"
        self.loss = NTXentLoss(temperature=temperature, gather_distributed=True)
        rank = _rank()
        gen = torch.Generator().manual_seed(seed + (rank if support_set == "per_worker" else 0))
        with torch.no_grad():
            self.bank.bank.copy_(
                nn.functional.normalize(torch.randn(self.bank.bank.shape, generator=gen), dim=-1)
            )

    def synchronize(self) -> None:
        """Make the banks of all ranks equal to rank 0's (``"global"`` only; no-op otherwise).

        Call once after construction or after loading a checkpoint, on every rank.
        """
        if self.support_set == "global" and _world() > 1:
            dist.broadcast(self.bank.bank, src=0)
            dist.broadcast(self.bank.bank_ptr, src=0)

    def forward(
        self,
        z0: torch.Tensor,
        p0: torch.Tensor,
        z1: torch.Tensor,
        p1: torch.Tensor,
        *,
        update: bool = True,
    ) -> torch.Tensor:
        """Return the symmetric NNCLR loss of two views.

        Parameters
        ----------
        z0, z1 : torch.Tensor
            (n, proj_dim) projections of the two views.
        p0, p1 : torch.Tensor
            (n, proj_dim) predictions of the two views.
        update : bool
            Enqueue ``z1`` into the support set (training); False for validation. Every rank
            must pass the same value (``"global"`` gathers across ranks).

        Returns
        -------
        torch.Tensor
            Scalar loss of this rank's rows (the mean over ranks is the global loss).
        """
        z0, p0, z1, p1 = z0.float(), p0.float(), z1.float(), p1.float()
        nn0 = self.bank(z0.detach(), update=False)
        nn1 = self.bank(z1.detach(), update=update)
        return 0.5 * (self.loss(nn0, p1) + self.loss(nn1, p0))  # type: ignore[no-any-return]

    def bank_state(self) -> dict[str, torch.Tensor]:
        """Return this rank's support set as ``{"bank": (N, D) float32, "ptr": (1,) int64}``."""
        return {"bank": self.bank.bank.detach().cpu().clone(),
                "ptr": self.bank.bank_ptr.detach().cpu().clone()}

    def load_bank_state(self, state: dict[str, torch.Tensor]) -> None:
        """Restore a support set saved by :meth:`bank_state`.

        Raises
        ------
        ValueError
            If the saved bank's shape differs from this one's.
        """
        bank = state["bank"]
        if tuple(bank.shape) != tuple(self.bank.bank.shape):
            msg = f"saved support set has shape {tuple(bank.shape)}, " \
                  f"expected {tuple(self.bank.bank.shape)}"
            raise ValueError(msg)
        with torch.no_grad():
            self.bank.bank.copy_(bank.to(self.bank.bank.device))
            self.bank.bank_ptr.copy_(state["ptr"].to(self.bank.bank_ptr.device))


def _rank() -> int:
    return dist.get_rank() if dist.is_available() and dist.is_initialized() else 0


def _world() -> int:
    return dist.get_world_size() if dist.is_available() and dist.is_initialized() else 1
