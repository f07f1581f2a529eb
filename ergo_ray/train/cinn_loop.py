"""Training the conditional INN: a pure epoch loop, and its Ray Train wrapper.

:func:`fit_cinn` trains one :class:`~ergo_ray.models.cinn.ConditionalINN` on in-memory
(target, condition) matrices: maximum likelihood ``mean(½‖z‖² − log|det J|)``, Adam,
``ReduceLROnPlateau`` on the validation NLL, gradient-norm clipping and early stopping
(method.md §4.3). It keeps the best-validation weights and calls back after every epoch with
a complete, resumable training state, so it runs the same with Ray Train switched off (unit
tests) and inside :func:`train_loop_per_worker`.

:func:`train_loop_per_worker` is the Ray Train function: it pulls its dataset shard into
memory once (representations are small: 1 kB per galaxy), wraps the network with
``prepare_model`` (DDP when there are several workers), averages the validation NLL over
the workers so that every rank takes the same schedule and stopping decisions, and reports
its metrics with a checkpoint (``state.pt``) every ``checkpoint_every_s`` seconds and at
the end. Re-running ``fit()`` with the same
``RunConfig(name, storage_path)`` resumes from the latest one (ray-2.60-notes §2.1).
"""

from __future__ import annotations

import copy
import logging
import math
import os
import tempfile
import time
from collections.abc import Callable, Mapping, Sequence
from dataclasses import dataclass
from typing import TYPE_CHECKING, Any

import numpy as np
import torch

from ergo_ray.errors import CheckpointError, InputError
from ergo_ray.io import storage as st
from ergo_ray.models.cinn import CinnArch, ConditionalINN

if TYPE_CHECKING:
    import ray.data
    import ray.train

    from ergo_ray.config.schema import RunConfig, StorageConfig

log = logging.getLogger("ergo_ray")

__all__ = [
    "RUN_NAME",
    "STATE_FILE",
    "TrainJob",
    "fit_cinn",
    "loop_config",
    "run_training",
    "train_loop_per_worker",
]

STATE_FILE = "state.pt"
#: Ray Train run name of ``train-cinn`` (``OUT/_train/cinn``).
RUN_NAME = "cinn"
_STATE_FORMAT = "ergo_ray.cinn-state"
_RUN_FORMAT = "ergo_ray.cinn-run"
N_TARGETS = 3


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
    arch = CinnArch.from_dict(config["arch"])
    model = ConditionalINN(arch)
    if config.get("cond_scaling"):
        model.set_condition_scaling(*config["cond_scaling"])
    model = model.to(dev)
    opt = torch.optim.Adam(
        list(model.trainable_parameters()),
        lr=config["lr"],
        weight_decay=config["weight_decay"],
    )
    sched = torch.optim.lr_scheduler.ReduceLROnPlateau(
        opt, mode="min", factor=config["lr_factor"], patience=config["lr_patience"]
    )
    st_: dict[str, Any] = {
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
        st_.update(
            {
                k: state[k]
                for k in (
                    "epoch",
                    "best_val",
                    "best_state",
                    "bad_epochs",
                    "history",
                    "stopped",
                )
            }
        )
        st_["history"] = list(st_["history"])
    net = wrap(model) if wrap else model
    x_tr, c_tr = (t.to(dev) for t in train)
    n = len(x_tr)
    if n == 0:
        raise InputError("no training rows for the cINN")
    bs = min(int(config["batch_size"]), n)
    steps = max(1, n // bs)
    red = reduce or (lambda s, k: (s, k))
    noise = float(config["label_noise"])
    for epoch in range(int(st_["epoch"]) + 1, int(config["epochs"])):
        if st_["stopped"]:
            break
        gen = torch.Generator().manual_seed(
            int(config["seed"]) * 1_000_003 + epoch * 7919 + rank
        )
        order = torch.randperm(n, generator=gen).to(dev)
        model.train()
        tot_dev, cnt = torch.zeros((), dtype=torch.float64, device=dev), 0
        for step in range(steps):
            idx = order[step * bs : (step + 1) * bs]
            x = x_tr[idx]
            if noise > 0:
                x = x + noise * torch.randn(x.shape, generator=gen).to(dev)
            loss = _nll(net, x, c_tr[idx]).mean()
            opt.zero_grad(set_to_none=True)
            loss.backward()
            torch.nn.utils.clip_grad_norm_(
                model.trainable_parameters(), config["grad_clip"]
            )
            opt.step()
            tot_dev += loss.detach().double() * len(idx)  # no per-step device sync
            cnt += len(idx)
        s, k = red(float(tot_dev), cnt)
        train_nll = s / max(k, 1)
        if val is not None and len(val[0]):
            vs, vk = red(*_evaluate(model, val[0].to(dev), val[1].to(dev)))
            val_nll = vs / max(vk, 1)
        else:
            val_nll = train_nll
        if not math.isfinite(val_nll):
            log.warning("epoch %d: non-finite validation NLL", epoch)
        sched.step(val_nll if math.isfinite(val_nll) else math.inf)
        if val_nll < st_["best_val"] - 1e-6:
            st_["best_val"] = val_nll
            st_["best_state"] = {
                k_: v.detach().cpu().clone() for k_, v in model.state_dict().items()
            }
            st_["bad_epochs"] = 0
        else:
            st_["bad_epochs"] += 1
        st_["stopped"] = st_["bad_epochs"] >= int(config["patience"])
        st_["epoch"] = epoch
        metrics = {
            "epoch": epoch,
            "train_nll": train_nll,
            "val_nll": val_nll,
            "best_val_nll": st_["best_val"],
            "lr": opt.param_groups[0]["lr"],
            "stopped": st_["stopped"],
        }
        st_["history"].append(metrics)
        if on_epoch is not None:
            full = {
                "format": _STATE_FORMAT,
                "arch": arch.to_dict(),
                "config": {k_: config.get(k_) for k_ in RESUME_KEYS},
                "model": {
                    k_: v.detach().cpu().clone() for k_, v in model.state_dict().items()
                },
                "optimizer": copy.deepcopy(opt.state_dict()),
                "scheduler": copy.deepcopy(sched.state_dict()),
                **{k_: v for k_, v in st_.items() if k_ != "history"},
                "history": [dict(h) for h in st_["history"]],
            }
            on_epoch(metrics, full)
    if st_["best_state"] is not None:
        model.load_state_dict(st_["best_state"])
    return model.eval(), st_


# ------------------------------------------------------------------------ Ray Train
def _collect(shard: Any) -> tuple[torch.Tensor, torch.Tensor]:
    """Pull a dataset shard (column ``data``: [targets | condition]) into memory."""
    parts = [
        np.asarray(b["data"], np.float32)
        for b in shard.iter_batches(batch_size=8192, batch_format="numpy")
    ]
    if not parts:
        return torch.empty(0, N_TARGETS), torch.empty(0, 0)
    m = torch.from_numpy(np.concatenate(parts))
    return m[:, :N_TARGETS].contiguous(), m[:, N_TARGETS:].contiguous()


def _state_from_checkpoint(ckpt: Any) -> dict[str, Any]:
    """Read the ``{"format", "jobs": {name: state}}`` record of a checkpoint."""
    with ckpt.as_directory() as d:
        path = os.path.join(d, STATE_FILE)
        state = torch.load(path, map_location="cpu", weights_only=True)
    if not isinstance(state, dict) or state.get("format") != _RUN_FORMAT:
        msg = f"{path}: not a cINN training state"
        raise CheckpointError(msg)
    return state


def _finished(state: Mapping[str, Any], config: Mapping[str, Any]) -> bool:
    return (
        bool(state.get("stopped")) or int(state["epoch"]) >= int(config["epochs"]) - 1
    )


def train_loop_per_worker(config: dict[str, Any]) -> None:
    """Ray Train function of ``train-cinn``.

    ``config["jobs"]`` lists the networks to train, one after the other (the cINN, then
    the baseline); job ``i`` reads datasets ``train_i`` and ``val_i`` (column ``data``).
    The first epoch, the last one (or the one that stops early) and the first epoch after
    each ``checkpoint_every_s`` seconds report their metrics with a checkpoint holding the
    state of every job so far (with every epoch's metrics in its history), so a resumed run
    skips finished jobs and continues the current one after its last reported epoch. Other
    epochs do not report: a Ray Train report waits for the controller's next poll of the
    worker (``RAY_TRAIN_HEALTH_CHECK_INTERVAL_S``, 2 s by default), far longer than an
    epoch of the cINN.
    """
    import ray.train
    import ray.train.torch as rtt

    ctx = ray.train.get_context()
    rank, world = ctx.get_world_rank(), ctx.get_world_size()
    torch.set_num_threads(max(1, int(config.get("threads", 1))))
    device = rtt.get_device()

    def reduce(s: float, k: int) -> tuple[float, int]:
        if world == 1:
            return s, k
        t = torch.tensor([s, float(k)], dtype=torch.float64, device=device)
        torch.distributed.all_reduce(t)
        return float(t[0]), int(t[1])

    prior = ray.train.get_checkpoint()
    states: dict[str, Any] = (
        dict(_state_from_checkpoint(prior)["jobs"]) if prior else {}
    )
    for i, job in enumerate(config["jobs"]):
        name = job["name"]
        state = states.get(name)
        if state is not None:
            check_resumable(state, job)
            if _finished(state, job):
                continue
        if state is not None and rank == 0:
            log.info("resuming cINN %r after epoch %d", name, state["epoch"])

        def report(
            metrics: dict[str, Any],
            full: dict[str, Any],
            name: str = name,
            last_epoch: int = int(job["epochs"]) - 1,
            every: float = float(job.get("checkpoint_every_s", 0.0)),
            last_saved: list[float] = [-math.inf],  # noqa: B006 - per job, mutated
        ) -> None:
            states[name] = full
            now = time.monotonic()
            due = (
                metrics["stopped"]
                or metrics["epoch"] >= last_epoch
                or now - last_saved[0] >= every
            )
            # Every rank takes rank 0's decision, so that all report the same number of times.
            if world > 1:
                flag = torch.tensor([float(due)], device=device)
                torch.distributed.broadcast(flag, src=0)
                due = bool(flag.item())
            if not due:
                return
            last_saved[0] = now
            with tempfile.TemporaryDirectory() as d:
                ckpt = None
                if rank == 0:
                    torch.save(
                        {"format": _RUN_FORMAT, "jobs": states},
                        os.path.join(d, STATE_FILE),
                    )
                    ckpt = ray.train.Checkpoint.from_directory(d)
                ray.train.report(
                    {"job": name, **metrics},
                    checkpoint=ckpt,
                    checkpoint_dir_name=f"{name}_epoch_{metrics['epoch']:04d}",
                )

        train = _collect(ray.train.get_dataset_shard(f"train_{i}"))
        val = _collect(ray.train.get_dataset_shard(f"val_{i}"))
        fit_cinn(
            train,
            val if len(val[0]) else None,
            job,
            state=state,
            wrap=lambda m: rtt.prepare_model(m),
            reduce=reduce,
            on_epoch=report,
            rank=rank,
            device=device,
        )


def _run_config(
    out_url: str, name: str, storage: StorageConfig | None
) -> ray.train.RunConfig:
    """Checkpoints under ``OUT/_train/<name>``: the same name and path resume a run."""
    import ray.train

    from ergo_ray.shared.embedding import write_filesystem

    fs, path = write_filesystem(st.join(out_url, "_train"), storage)
    return ray.train.RunConfig(
        name=name,
        storage_path=path,
        storage_filesystem=None if st.locate(out_url).scheme == "file" else fs,
        checkpoint_config=ray.train.CheckpointConfig(num_to_keep=2),
        failure_config=ray.train.FailureConfig(max_failures=1),
    )


@dataclass
class TrainJob:
    """One network to train in a ``train-cinn`` run.

    Attributes
    ----------
    name : str
        ``"cinn"`` or ``"baseline"``.
    targets, conditions : numpy.ndarray
        Training rows: standardised targets (N, 3) and conditions (N, C).
    val_targets, val_conditions : numpy.ndarray
        Validation rows.
    config : dict
        :func:`loop_config` output.
    """

    name: str
    targets: np.ndarray
    conditions: np.ndarray
    val_targets: np.ndarray
    val_conditions: np.ndarray
    config: dict[str, Any]


def run_training(
    out_url: str,
    jobs: Sequence[TrainJob],
    scaling: ray.train.ScalingConfig,
    storage: StorageConfig | None = None,
    run_name: str = RUN_NAME,
) -> dict[str, tuple[ConditionalINN, dict[str, Any]]]:
    """Train (or resume) the cINN and the baseline in one Ray Train run.

    Parameters
    ----------
    out_url : str
        The bundle folder; checkpoints go to ``OUT/_train/<run_name>``.
    jobs : sequence of TrainJob
        Networks to train, in order.
    scaling : ray.train.ScalingConfig
        Workers and resources.
    storage : StorageConfig, optional
        Storage settings of ``out_url``.
    run_name : str
        Ray Train run name (the same name and folder resume the run).

    Returns
    -------
    dict
        Job name → (best-validation network on the CPU in eval mode, training summary with
        ``epoch``, ``best_val``, ``history`` and ``stopped``).

    Raises
    ------
    CheckpointError
        If training produced no checkpoint, or a job is missing from it.
    """
    import ray.data
    import ray.train
    from ray.train.torch import TorchTrainer

    def to_ds(x: np.ndarray, c: np.ndarray) -> ray.data.Dataset:
        m = np.concatenate(
            [np.asarray(x, np.float32), np.asarray(c, np.float32)], axis=1
        )
        return ray.data.from_numpy(np.ascontiguousarray(m))

    datasets: dict[str, ray.data.Dataset] = {}
    for i, job in enumerate(jobs):
        datasets[f"train_{i}"] = to_ds(job.targets, job.conditions)
        datasets[f"val_{i}"] = to_ds(job.val_targets, job.val_conditions)
    threads = max(1, int((scaling.resources_per_worker or {}).get("CPU", 1)))
    config = {"jobs": [{"name": j.name, **j.config} for j in jobs], "threads": threads}
    trainer = TorchTrainer(
        train_loop_per_worker,
        train_loop_config=config,
        scaling_config=scaling,
        run_config=_run_config(out_url, run_name, storage),
        datasets=datasets,
        dataset_config=ray.train.DataConfig(
            datasets_to_split=[f"train_{i}" for i in range(len(jobs))]
        ),
    )
    result = trainer.fit()
    if result.checkpoint is None:
        msg = f"{st.redact(out_url)}: cINN training produced no checkpoint"
        raise CheckpointError(msg)
    states = _state_from_checkpoint(result.checkpoint)["jobs"]
    out: dict[str, tuple[ConditionalINN, dict[str, Any]]] = {}
    for job in jobs:
        if job.name not in states:
            msg = f"{st.redact(out_url)}: the training checkpoint has no {job.name!r} network"
            raise CheckpointError(msg)
        state = states[job.name]
        model = ConditionalINN(CinnArch.from_dict(state["arch"]))
        model.load_state_dict(
            state["best_state"] if state.get("best_state") else state["model"]
        )
        summary = {
            k: copy.deepcopy(state[k])
            for k in ("epoch", "best_val", "history", "stopped")
        }
        out[job.name] = (model.eval(), summary)
    return out
