"""Training the conditional INN on in-memory matrices: :func:`fit_cinn`, a pure epoch loop.

:func:`fit_cinn` trains one :class:`~ergo_ray.models.cinn.ConditionalINN` on in-memory
(target, condition) matrices: maximum likelihood ``mean(½‖z‖² − log|det J|)``, Adam,
``ReduceLROnPlateau`` on the validation NLL, gradient-norm clipping and early stopping
(method.md §4.3). It keeps the best-validation weights and calls back after every epoch with
a complete, resumable training state, so it runs the same with Ray Train switched off (unit
tests) and inside :func:`ergo_ray.train.cinn_loop.train_loop_per_worker`.
"""

from __future__ import annotations

import copy
import logging
import math
from collections.abc import Callable, Mapping, Sequence
from typing import TYPE_CHECKING, Any

import torch

from ergo_ray.errors import CheckpointError, InputError
from ergo_ray.models.cinn import CinnArch, ConditionalINN, drop_negligible_weights

if TYPE_CHECKING:
    from ergo_ray.config.schema import RunConfig

log = logging.getLogger("ergo_ray")

__all__ = ["RESUME_KEYS", "check_resumable", "fit_cinn", "loop_config"]

#: ``format`` of the training state of one network.
STATE_FORMAT = "ergo_ray.cinn-state"


def loop_config(
    cfg: RunConfig,
    arch: CinnArch,
    seed: int,
    cond_scaling: tuple[Sequence[float], Sequence[float]] | None = None,
) -> dict[str, Any]:
    """Return the ``train_loop_config`` of a cINN run (plain, picklable values).

    Parameters
    ----------
    cfg : RunConfig
        Run configuration (``cinn`` section).
    arch : CinnArch
        Network sizes.
    seed : int
        Seed of the batch order.
    cond_scaling : tuple of sequences, optional
        (mean, scale) of the training conditions, stored in the network.

    Returns
    -------
    dict
        The loop configuration.
    """
    c = cfg.cinn
    scaling = None
    if cond_scaling is not None:
        scaling = [
            [float(v) for v in cond_scaling[0]],
            [float(v) for v in cond_scaling[1]],
        ]
    return {
        "cond_scaling": scaling,
        "arch": arch.to_dict(),
        "lr": c.lr,
        "weight_decay": c.weight_decay,
        "batch_size": c.batch_size,
        "epochs": c.epochs,
        "patience": c.patience,
        "lr_factor": c.lr_factor,
        "lr_patience": c.lr_patience,
        "grad_clip": c.grad_clip,
        "label_noise": c.label_noise,
        "checkpoint_every_s": c.checkpoint_every_s,
        "seed": int(seed),
    }


#: Loop settings a resumed run must share with its checkpoint (epochs and patience may
#: change, e.g. to train longer).
RESUME_KEYS: tuple[str, ...] = (
    "arch",
    "cond_scaling",
    "lr",
    "weight_decay",
    "batch_size",
    "lr_factor",
    "lr_patience",
    "grad_clip",
    "label_noise",
    "seed",
)


def check_resumable(state: Mapping[str, Any], config: Mapping[str, Any]) -> None:
    """Refuse to continue a checkpoint made with different settings or data scaling.

    Parameters
    ----------
    state : mapping
        A training state written by :func:`fit_cinn`.
    config : mapping
        This run's :func:`loop_config`.

    Raises
    ------
    CheckpointError
        Naming the first differing setting.
    """
    saved = state.get("config")
    if not isinstance(saved, Mapping):
        msg = "the cINN checkpoint predates this version's training settings; use a new --out"
        raise CheckpointError(msg)
    for key in RESUME_KEYS:
        if key == "arch":
            a, b = dict(state.get("arch") or {}), dict(config["arch"])
        else:
            a, b = saved.get(key), config.get(key)
        if a != b:
            detail = "" if key == "cond_scaling" else f" ({a!r} vs {b!r})"
            msg = (
                f"the cINN checkpoint was trained with a different {key}{detail}; use a new "
                f"--out or the original configuration and data"
            )
            raise CheckpointError(msg)


def _nll(
    net: Callable[..., tuple[torch.Tensor, torch.Tensor]],
    x: torch.Tensor,
    c: torch.Tensor,
) -> torch.Tensor:
    z, log_jac = net(x, c)
    return 0.5 * (z**2).sum(dim=1) - log_jac


def _evaluate(
    model: ConditionalINN, x: torch.Tensor, c: torch.Tensor, batch: int = 4096
) -> tuple[float, int]:
    """Sum of the per-object NLL and the count (so workers can average exactly)."""
    total = 0.0
    model.eval()
    with torch.no_grad():
        for start in range(0, len(x), batch):
            total += float(
                model.nll(x[start : start + batch], c[start : start + batch]).sum()
            )
    model.train()
    return total, len(x)


def _optimizer(
    model: ConditionalINN, config: Mapping[str, Any]
) -> tuple[torch.optim.Optimizer, torch.optim.lr_scheduler.ReduceLROnPlateau]:
    """Adam on the trainable parameters and ``ReduceLROnPlateau`` on the validation NLL."""
    opt = torch.optim.Adam(
        list(model.trainable_parameters()),
        lr=config["lr"],
        weight_decay=config["weight_decay"],
    )
    sched = torch.optim.lr_scheduler.ReduceLROnPlateau(
        opt, mode="min", factor=config["lr_factor"], patience=config["lr_patience"]
    )
    return opt, sched


#: The progress entries of a training state (besides weights, optimizer and scheduler).
_PROGRESS_KEYS: tuple[str, ...] = (
    "epoch", "best_val", "best_state", "bad_epochs", "history", "stopped")


def _progress(
    state: Mapping[str, Any] | None,
    config: Mapping[str, Any],
    model: ConditionalINN,
    opt: torch.optim.Optimizer,
    sched: torch.optim.lr_scheduler.ReduceLROnPlateau,
) -> dict[str, Any]:
    """Return the progress of a new run, or restore ``state`` into the network and optimizer."""
    progress: dict[str, Any] = {
        "epoch": -1,
        "best_val": math.inf,
        "best_state": None,
        "bad_epochs": 0,
        "history": [],
        "stopped": False,
    }
    if state is not None:
        check_resumable(state, config)
        model.load_state_dict(state["model"])
        opt.load_state_dict(state["optimizer"])
        sched.load_state_dict(state["scheduler"])
        progress.update({k: state[k] for k in _PROGRESS_KEYS})
        progress["history"] = list(progress["history"])
    return progress


def _train_epoch(
    net: Callable[..., tuple[torch.Tensor, torch.Tensor]],
    model: ConditionalINN,
    opt: torch.optim.Optimizer,
    data: tuple[torch.Tensor, torch.Tensor],
    order: torch.Tensor,
    gen: torch.Generator,
    batch_size: int,
    config: Mapping[str, Any],
) -> tuple[float, int]:
    """One epoch of Adam steps in ``order``; return the summed NLL and the row count."""
    x_tr, c_tr = data
    dev = x_tr.device
    noise = float(config["label_noise"])
    model.train()
    tot_dev, cnt = torch.zeros((), dtype=torch.float64, device=dev), 0
    for step in range(max(1, len(x_tr) // batch_size)):
        idx = order[step * batch_size : (step + 1) * batch_size]
        x = x_tr[idx]
        if noise > 0:
            x = x + noise * torch.randn(x.shape, generator=gen).to(dev)
        loss = _nll(net, x, c_tr[idx]).mean()
        opt.zero_grad(set_to_none=True)
        loss.backward()
        torch.nn.utils.clip_grad_norm_(model.trainable_parameters(), config["grad_clip"])
        opt.step()
        tot_dev += loss.detach().double() * len(idx)  # no per-step device sync
        cnt += len(idx)
    drop_negligible_weights(model)
    return float(tot_dev), cnt


def _val_nll(
    model: ConditionalINN,
    val: tuple[torch.Tensor, torch.Tensor],
    reduce: Callable[[float, int], tuple[float, int]],
    device: torch.device,
) -> float:
    """Mean validation NLL over all workers."""
    vs, vk = reduce(*_evaluate(model, val[0].to(device), val[1].to(device)))
    return vs / max(vk, 1)


def _weights(model: ConditionalINN) -> dict[str, torch.Tensor]:
    return {k: v.detach().cpu().clone() for k, v in model.state_dict().items()}


def _track_best(
    progress: dict[str, Any], val_nll: float, model: ConditionalINN, patience: int
) -> None:
    """Keep the best-validation weights; count the epochs without improvement."""
    if val_nll < progress["best_val"] - 1e-6:
        progress["best_val"] = val_nll
        progress["best_state"] = _weights(model)
        progress["bad_epochs"] = 0
    else:
        progress["bad_epochs"] += 1
    progress["stopped"] = progress["bad_epochs"] >= patience


def _full_state(
    progress: Mapping[str, Any],
    config: Mapping[str, Any],
    model: ConditionalINN,
    opt: torch.optim.Optimizer,
    sched: torch.optim.lr_scheduler.ReduceLROnPlateau,
) -> dict[str, Any]:
    """Return the complete, resumable training state passed to ``on_epoch``."""
    return {
        "format": STATE_FORMAT,
        "arch": CinnArch.from_dict(config["arch"]).to_dict(),
        "config": {k: config.get(k) for k in RESUME_KEYS},
        "model": _weights(model),
        "optimizer": copy.deepcopy(opt.state_dict()),
        "scheduler": copy.deepcopy(sched.state_dict()),
        **{k: v for k, v in progress.items() if k != "history"},
        "history": [dict(h) for h in progress["history"]],
    }


def fit_cinn(
    train: tuple[torch.Tensor, torch.Tensor],
    val: tuple[torch.Tensor, torch.Tensor] | None,
    config: Mapping[str, Any],
    *,
    state: Mapping[str, Any] | None = None,
    wrap: Callable[[ConditionalINN], Any] | None = None,
    reduce: Callable[[float, int], tuple[float, int]] | None = None,
    on_epoch: Callable[[dict[str, Any], dict[str, Any]], None] | None = None,
    rank: int = 0,
    device: torch.device | None = None,
) -> tuple[ConditionalINN, dict[str, Any]]:
    """Train a cINN by maximum likelihood with early stopping on the validation NLL.

    Parameters
    ----------
    train : tuple of torch.Tensor
        (targets (N, 3) standardised, conditions (N, C)) of this worker.
    val : tuple of torch.Tensor, optional
        Validation (targets, conditions); without it the training NLL drives the schedule.
    config : mapping
        :func:`loop_config` output.
    state : mapping, optional
        A state passed to ``on_epoch`` earlier: training continues after its epoch.
    wrap : callable, optional
        Wraps the network for training (e.g. ``ray.train.torch.prepare_model``).
    reduce : callable, optional
        ``(sum, count) -> (sum, count)`` over workers (all-reduce); identity by default.
    on_epoch : callable, optional
        Called as ``on_epoch(metrics, state)`` after every epoch.
    rank : int
        Worker rank (seeds the batch order).
    device : torch.device, optional
        Training device (default CPU).

    Returns
    -------
    model : ConditionalINN
        The network with the best validation weights, in eval mode.
    state : dict
        The final training state (``history``, ``best_val``, ``epoch``, ``stopped``).
    """
    dev = device or torch.device("cpu")
    model = ConditionalINN(CinnArch.from_dict(config["arch"]))
    if config.get("cond_scaling"):
        model.set_condition_scaling(*config["cond_scaling"])
    model = model.to(dev)
    opt, sched = _optimizer(model, config)
    progress = _progress(state, config, model, opt, sched)
    net = wrap(model) if wrap else model
    data = tuple(t.to(dev) for t in train)
    n = len(data[0])
    if n == 0:
        raise InputError("no training rows for the cINN")
    bs = min(int(config["batch_size"]), n)
    red = reduce or (lambda s, k: (s, k))
    for epoch in range(int(progress["epoch"]) + 1, int(config["epochs"])):
        if progress["stopped"]:
            break
        gen = torch.Generator().manual_seed(
            int(config["seed"]) * 1_000_003 + epoch * 7919 + rank
        )
        order = torch.randperm(n, generator=gen).to(dev)
        s, k = red(*_train_epoch(net, model, opt, data, order, gen, bs, config))
        train_nll = s / max(k, 1)
        val_nll = _val_nll(model, val, red, dev) if val is not None and len(val[0]) else train_nll
        if not math.isfinite(val_nll):
            log.warning("epoch %d: non-finite validation NLL", epoch)
        sched.step(val_nll if math.isfinite(val_nll) else math.inf)
        _track_best(progress, val_nll, model, int(config["patience"]))
        progress["epoch"] = epoch
        metrics = {"epoch": epoch, "train_nll": train_nll, "val_nll": val_nll,
                   "best_val_nll": progress["best_val"], "lr": opt.param_groups[0]["lr"],
                   "stopped": progress["stopped"]}
        progress["history"].append(metrics)
        if on_epoch is not None:
            on_epoch(metrics, _full_state(progress, config, model, opt, sched))
    if progress["best_state"] is not None:
        model.load_state_dict(progress["best_state"])
    return model.eval(), progress
