"""Training the conditional INN with Ray Train, around :func:`~ergo_ray.train.cinn_fit.fit_cinn`.

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

from ergo_ray.errors import CheckpointError
from ergo_ray.io import storage as st
from ergo_ray.models.cinn import CinnArch, ConditionalINN
from ergo_ray.train.cinn_fit import check_resumable, fit_cinn

if TYPE_CHECKING:
    import ray.data
    import ray.train

    from ergo_ray.config.schema import StorageConfig

log = logging.getLogger("ergo_ray")

__all__ = [
    "RUN_NAME",
    "STATE_FILE",
    "TrainJob",
    "run_training",
    "train_loop_per_worker",
]

STATE_FILE = "state.pt"
#: Ray Train run name of ``train-cinn`` (``OUT/_train/cinn``).
RUN_NAME = "cinn"
_RUN_FORMAT = "ergo_ray.cinn-run"
N_TARGETS = 3


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


def _all_reduce(world: int, device: torch.device) -> Callable[[float, int], tuple[float, int]]:
    """``(sum, count)`` summed over the workers (identity for one worker)."""

    def reduce(s: float, k: int) -> tuple[float, int]:
        if world == 1:
            return s, k
        t = torch.tensor([s, float(k)], dtype=torch.float64, device=device)
        torch.distributed.all_reduce(t)
        return float(t[0]), int(t[1])

    return reduce


def _reporter(
    states: dict[str, Any], name: str, job: Mapping[str, Any], world: int, rank: int,
    device: torch.device,
) -> Callable[[dict[str, Any], dict[str, Any]], None]:
    """Return the ``on_epoch`` of job ``name``: report metrics, with a checkpoint when due."""
    import ray.train

    last_epoch = int(job["epochs"]) - 1
    every = float(job.get("checkpoint_every_s", 0.0))
    last_saved = [-math.inf]

    def report(metrics: dict[str, Any], full: dict[str, Any]) -> None:
        states[name] = full
        now = time.monotonic()
        due = metrics["stopped"] or metrics["epoch"] >= last_epoch or now - last_saved[0] >= every
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
                torch.save({"format": _RUN_FORMAT, "jobs": states}, os.path.join(d, STATE_FILE))
                ckpt = ray.train.Checkpoint.from_directory(d)
            ray.train.report(
                {"job": name, **metrics},
                checkpoint=ckpt,
                checkpoint_dir_name=f"{name}_epoch_{metrics['epoch']:04d}",
            )

    return report


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
        train = _collect(ray.train.get_dataset_shard(f"train_{i}"))
        val = _collect(ray.train.get_dataset_shard(f"val_{i}"))
        fit_cinn(
            train,
            val if len(val[0]) else None,
            job,
            state=state,
            wrap=lambda m: rtt.prepare_model(m),
            reduce=_all_reduce(world, device),
            on_epoch=_reporter(states, name, job, world, rank, device),
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
