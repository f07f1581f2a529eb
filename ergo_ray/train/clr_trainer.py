"""The NNCLR trainer: :class:`ClrTrainer`, one epoch at a time, with or without DDP.

:class:`ClrTrainer` holds the model (:class:`~ergo_ray.models.nnclr.NNCLR`, the only module
wrapped by DDP), the support set and loss (:class:`~ergo_ray.models.nnclr.NNCLRCriterion`,
outside DDP), Adam, ``ReduceLROnPlateau`` on the validation loss and the AMP grad scaler
(GPU only). :meth:`ClrTrainer.run_epoch` runs one epoch from plain batch iterators — at most
``clr.max_batches_per_epoch`` training steps drawn from an endless stream of shuffled
batches, the validation loss, and the k-NN monitor — and works the same with or without a
``torch.distributed`` process group. :mod:`ergo_ray.train.clr_loop` feeds it, from Ray Data
shards or from in-memory arrays.

Augmentations are applied on the training device to both views, through one function,
:func:`augment_views`.
"""

from __future__ import annotations

import math
import time
from collections.abc import Iterable, Iterator, Mapping
from typing import Any

import numpy as np
import torch
import torch.distributed as dist
from torch import nn

from ergo_ray.errors import CheckpointError
from ergo_ray.io import storage as st
from ergo_ray.models.encoder import build_encoder
from ergo_ray.models.nnclr import NNCLR, NNCLRCriterion
from ergo_ray.preprocess.augment import augment_batch
from ergo_ray.train import checkpoint as ckpt
from ergo_ray.train.data import MONITOR_TARGETS
from ergo_ray.train.knn_monitor import knn_r2

__all__ = ["ClrTrainer", "augment_views"]

#: Validation-loss batches per epoch are ``ceil(max_batches_per_epoch / 8)``, the method's
#: ratio (≈ 44 validation batches for 350 training batches, method.md §3.3).
VAL_LOSS_DIVISOR = 8

Batch = np.ndarray
TargetBatch = tuple[np.ndarray, dict[str, np.ndarray]]


# --------------------------------------------------------------------------------------
# Augmentations


def augment_views(
    images: torch.Tensor, generator: torch.Generator, params: Mapping[str, Any]
) -> tuple[torch.Tensor, torch.Tensor]:
    """Two independently augmented views of a batch, on the batch's device.

    Parameters
    ----------
    images : torch.Tensor
        uint8 (N, 3, S, S) prepared stamps, already on the training device.
    generator : torch.Generator
        Random generator on the same device.
    params : mapping
        The ``clr.augment`` config section.

    Returns
    -------
    tuple of torch.Tensor
        Two float32 (N, 3, S, S) views, values around [0, 1].
    """
    x = images.float().div_(255.0)
    return augment_batch(x, generator, **params), augment_batch(x, generator, **params)


# --------------------------------------------------------------------------------------
# Distributed helpers (no-ops without a process group)


def _world() -> int:
    return dist.get_world_size() if dist.is_available() and dist.is_initialized() else 1


def _rank() -> int:
    return dist.get_rank() if dist.is_available() and dist.is_initialized() else 0


def _mean_across(value: float, device: torch.device) -> float:
    if _world() == 1:
        return value
    t = torch.tensor([value], dtype=torch.float64, device=device)
    dist.all_reduce(t)
    return float(t.item()) / _world()


def _gather_rows(t: torch.Tensor) -> torch.Tensor:
    """All-gather (n_r, ...) tensors of possibly different n_r; returns the concatenation."""
    if _world() == 1:
        return t
    n = torch.tensor([t.shape[0]], device=t.device)
    sizes = [torch.zeros_like(n) for _ in range(_world())]
    dist.all_gather(sizes, n)
    top = int(max(s.item() for s in sizes))
    padded = torch.zeros((top, *t.shape[1:]), dtype=t.dtype, device=t.device)
    padded[: t.shape[0]] = t
    parts = [torch.zeros_like(padded) for _ in range(_world())]
    dist.all_gather(parts, padded)
    return torch.cat([p[: int(s.item())] for p, s in zip(parts, sizes, strict=True)])


def _unwrap(model: nn.Module) -> nn.Module:
    return model.module if hasattr(model, "module") else model


# --------------------------------------------------------------------------------------
# The trainer


class ClrTrainer:
    """Model, support set, optimiser and scheduler of one worker, and one epoch of training.

    Parameters
    ----------
    config : mapping
        From :func:`loop_config`: ``clr`` (config section, JSON form), ``in_size``, ``seed``.
    device : torch.device
        Training device.
    """

    def __init__(self, config: Mapping[str, Any], device: torch.device) -> None:
        self.config = config
        self.clr: dict[str, Any] = dict(config["clr"])
        self.device = device
        self.use_amp = device.type == "cuda"
        seed = int(config.get("seed", 0))
        torch.manual_seed(seed)  # identical initial weights on every rank
        c = self.clr
        encoder = build_encoder(c["widths"], c["blocks"], c["rep_dim"], int(config["in_size"]))
        self.model: nn.Module = NNCLR(
            encoder, rep_dim=c["rep_dim"], proj_dim=c["proj_dim"], pred_hidden=c["pred_hidden"]
        ).to(device)
        self.criterion = NNCLRCriterion(
            proj_dim=c["proj_dim"],
            memory_bank_size=c["memory_bank_size"],
            temperature=c["temperature"],
            support_set=c["support_set"],
            seed=seed,
        ).to(device)
        self.optimizer = torch.optim.Adam(
            self.model.parameters(), lr=c["lr"], weight_decay=c["weight_decay"], betas=(0.9, 0.999)
        )
        self.scheduler = torch.optim.lr_scheduler.ReduceLROnPlateau(
            self.optimizer, mode="min", factor=c["lr_factor"], patience=c["lr_patience"]
        )
        self.scaler = torch.amp.GradScaler("cuda", enabled=self.use_amp)
        if device.type == "cuda":
            # convolutions in NHWC run on the tensor cores without layout transposes
            torch.backends.cudnn.benchmark = True
            self.model.to(memory_format=torch.channels_last)

    # -- state --------------------------------------------------------------------------

    def state(self, epoch: int) -> dict[str, Any]:
        """Training state for a checkpoint; a collective call (every rank must call it).

        The support sets of all ranks are gathered; for ``"global"`` only rank 0's is kept.
        """
        bank = self.criterion.bank_state()
        banks = _gather_rows(bank["bank"].to(self.device)[None]).cpu()
        ptrs = _gather_rows(bank["ptr"].to(self.device)[None]).cpu()
        if self.clr["support_set"] == "global":
            banks, ptrs = banks[:1], ptrs[:1]
        return {
            "epoch": int(epoch),
            "model": {k: v.detach().cpu() for k, v in _unwrap(self.model).state_dict().items()},
            "optimizer": self.optimizer.state_dict(),
            "scheduler": self.scheduler.state_dict(),
            "scaler": self.scaler.state_dict(),
            "support_set": {"mode": self.clr["support_set"], "bank": banks, "ptr": ptrs},
            "config": {
                "clr": self.clr,
                "preprocess": self.config.get("preprocess", {}),
                "in_size": int(self.config["in_size"]),
                "seed": int(self.config.get("seed", 0)),
            },
        }

    def load(self, state: Mapping[str, Any], source: str) -> int:
        """Restore a saved state (before DDP wrapping); returns the epoch to start at.

        Raises
        ------
        CheckpointError
            If the checkpoint's architecture differs from this run's.
        """
        ckpt.check_compatible(state["config"]["clr"], self.clr, source)
        try:
            _unwrap(self.model).load_state_dict(state["model"])
            self.optimizer.load_state_dict(state["optimizer"])
            self.scheduler.load_state_dict(state["scheduler"])
            if state["scaler"] and self.use_amp:  # empty when saved without AMP (CPU)
                self.scaler.load_state_dict(state["scaler"])
            banks, ptrs = state["support_set"]["bank"], state["support_set"]["ptr"]
            r = _rank() % banks.shape[0]
            self.criterion.load_bank_state({"bank": banks[r], "ptr": ptrs[r]})
        except (KeyError, RuntimeError, ValueError) as err:
            raise CheckpointError(
                f"{st.redact(source)}: cannot restore training state: {err}"
            ) from err
        return int(state["epoch"]) + 1

    # -- steps --------------------------------------------------------------------------

    def _to_device(self, images: np.ndarray) -> torch.Tensor:
        t = torch.from_numpy(np.require(images, np.uint8, ["C", "W"]))
        if self.device.type == "cuda":
            t = t.pin_memory()  # uint8 from pinned memory: a quarter of float32's bytes, async
        return t.to(self.device, non_blocking=True)

    def _loss(
        self, images: np.ndarray, generator: torch.Generator, *, update: bool
    ) -> torch.Tensor:
        v0, v1 = augment_views(self._to_device(images), generator, self.clr["augment"])
        views = torch.cat([v0, v1])
        if self.device.type == "cuda":
            views = views.contiguous(memory_format=torch.channels_last)
        with torch.autocast(self.device.type, dtype=torch.float16, enabled=self.use_amp):
            _, z, p = self.model(views)
        z0, z1 = z.chunk(2)
        p0, p1 = p.chunk(2)
        return self.criterion(z0, p0, z1, p1, update=update)

    def train_steps(
        self, batches: Iterator[np.ndarray], n_steps: int, generator: torch.Generator
    ) -> dict[str, float]:
        """Run ``n_steps`` optimisation steps.

        Returns the mean loss, the images, the wall seconds and the CPU seconds of this
        process (every thread, e.g. a data feed's) spent on them.
        """
        self.model.train()
        # the losses stay on the device: reading each one would wait for its step
        losses: list[torch.Tensor] = []
        images, t0, c0 = 0, time.perf_counter(), time.process_time()
        for _ in range(n_steps):
            batch = next(batches)
            loss = self._loss(batch, generator, update=True)
            self.optimizer.zero_grad(set_to_none=True)
            self.scaler.scale(loss).backward()
            self.scaler.unscale_(self.optimizer)
            nn.utils.clip_grad_norm_(self.model.parameters(), self.clr["grad_clip"])
            self.scaler.step(self.optimizer)
            self.scaler.update()
            losses.append(loss.detach().double())
            images += len(batch)
        mean_loss = float(torch.stack(losses).mean()) if losses else float("nan")
        return {"loss": mean_loss, "images": float(images), "seconds": time.perf_counter() - t0,
                "cpu_seconds": time.process_time() - c0}

    @torch.no_grad()
    def validate(
        self, batches: Iterable[TargetBatch], generator: torch.Generator, n_loss_batches: int
    ) -> tuple[float, torch.Tensor, dict[str, np.ndarray]]:
        """Compute the validation loss on the first full batches and clean representations.

        Every rank must see the same number of rows (Ray's equal shard split): the loss
        gathers negatives across ranks batch by batch.
        """
        self.model.eval()
        encoder = _unwrap(self.model).encoder
        losses: list[float] = []
        reps: list[torch.Tensor] = []
        targets: dict[str, list[np.ndarray]] = {t: [] for t in MONITOR_TARGETS}
        for images, tg in batches:
            if len(losses) < n_loss_batches and len(images) == self.clr["batch_size"]:
                losses.append(float(self._loss(images, generator, update=False)))
            with torch.autocast(self.device.type, dtype=torch.float16, enabled=self.use_amp):
                reps.append(encoder(self._to_device(images).float().div_(255.0)).float())
            for t in MONITOR_TARGETS:
                targets[t].append(np.asarray(tg[t], dtype=np.float64))
        rep = torch.cat(reps) if reps else torch.zeros((0, self.clr["rep_dim"]), device=self.device)
        tv = {t: np.concatenate(v) if v else np.zeros(0) for t, v in targets.items()}
        loss = float(np.mean(losses)) if losses else float("nan")
        return loss, rep, tv

    def run_epoch(
        self,
        epoch: int,
        train_batches: Iterator[np.ndarray],
        val_batches: Iterable[TargetBatch],
        monitor_batches: Iterable[TargetBatch],
    ) -> dict[str, Any]:
        """One epoch: training steps, validation loss, LR schedule, k-NN monitor.

        Collective when a process group exists (all ranks call it with equally sized
        shards). Returns the metrics (identical on every rank).
        """
        c = self.clr
        seed = int(self.config.get("seed", 0))
        t0 = time.perf_counter()
        gen = torch.Generator(device=self.device).manual_seed(
            seed + 7919 * _rank() + 104729 * epoch
        )
        tr = self.train_steps(train_batches, int(c["max_batches_per_epoch"]), gen)
        val_gen = torch.Generator(device=self.device).manual_seed(seed + 7919 * _rank() + 13)
        n_loss = max(1, math.ceil(c["max_batches_per_epoch"] / VAL_LOSS_DIVISOR))
        val_loss, val_rep, val_t = self.validate(val_batches, val_gen, n_loss)
        _, ref_rep, ref_t = self.validate(monitor_batches, val_gen, 0)
        train_loss = _mean_across(tr["loss"], self.device)
        val_loss = _mean_across(val_loss, self.device)
        self.scheduler.step(val_loss if math.isfinite(val_loss) else train_loss)
        r2 = self._monitor(ref_rep, ref_t, val_rep, val_t)
        metrics: dict[str, Any] = {
            "epoch": int(epoch),
            "train_loss": train_loss,
            "val_loss": val_loss,
            "lr": float(self.optimizer.param_groups[0]["lr"]),
            "train_images_per_s": tr["images"] / max(tr["seconds"], 1e-9),
            "train_images_per_cpu_s": tr["images"] / max(tr["cpu_seconds"], 1e-9),
            "train_images": int(tr["images"]) * _world(),
            "world_size": _world(),
            "support_set_max_diff": self._bank_spread(),
        }
        metrics |= {f"knn_r2_{t}": v for t, v in r2.items()}
        metrics["epoch_seconds"] = time.perf_counter() - t0
        return metrics

    def _monitor(
        self,
        ref_rep: torch.Tensor,
        ref_t: dict[str, np.ndarray],
        val_rep: torch.Tensor,
        val_t: dict[str, np.ndarray],
    ) -> dict[str, float]:
        ref_all = _gather_rows(ref_rep)
        val_all = _gather_rows(val_rep)
        ref_tt = (
            _gather_rows(
                torch.as_tensor(
                    np.stack([ref_t[t] for t in MONITOR_TARGETS], 1)
                    if len(ref_rep)
                    else np.zeros((0, 3)),
                    dtype=torch.float64,
                    device=self.device,
                )
            )
            .cpu()
            .numpy()
        )
        val_tt = (
            _gather_rows(
                torch.as_tensor(
                    np.stack([val_t[t] for t in MONITOR_TARGETS], 1)
                    if len(val_rep)
                    else np.zeros((0, 3)),
                    dtype=torch.float64,
                    device=self.device,
                )
            )
            .cpu()
            .numpy()
        )
        if len(ref_all) == 0 or len(val_all) == 0:
            return {t: float("nan") for t in MONITOR_TARGETS}
        return knn_r2(
            ref_all,
            {t: ref_tt[:, i] for i, t in enumerate(MONITOR_TARGETS)},
            val_all,
            {t: val_tt[:, i] for i, t in enumerate(MONITOR_TARGETS)},
            k=int(self.clr["knn_k"]),
            device=self.device,
        )

    def _bank_spread(self) -> float:
        """Largest absolute difference between any rank's support set and rank 0's."""
        if _world() == 1:
            return 0.0
        bank = self.criterion.bank.bank.detach()
        ref = bank.clone()
        dist.broadcast(ref, src=0)
        diff = (bank - ref).abs().max()
        dist.all_reduce(diff, op=dist.ReduceOp.MAX)
        return float(diff.item())
