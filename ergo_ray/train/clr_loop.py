"""The NNCLR training loop: one function per Ray Train worker, and the same loop without Ray.

:func:`train_loop_per_worker` is the Ray Train entry point: it feeds the epochs of a
:class:`~ergo_ray.train.clr_trainer.ClrTrainer` from the worker's Ray Data shards, resumes
from ``ray.train.get_checkpoint()``, and reports metrics and a checkpoint
(:mod:`ergo_ray.train.checkpoint`) every epoch. :func:`train_local` runs the same epochs on
in-memory arrays in plain PyTorch (benchmarks, tests). The driver behind
``ergo-ray train-nnclr`` is :mod:`ergo_ray.train.nnclr_stage`.
"""

from __future__ import annotations

import logging
import tempfile
from collections.abc import Iterator, Mapping
from typing import TYPE_CHECKING, Any

import numpy as np
import torch

from ergo_ray.errors import InputError
from ergo_ray.io import storage as st
from ergo_ray.train import checkpoint as ckpt
from ergo_ray.train.clr_trainer import ClrTrainer, TargetBatch
from ergo_ray.train.data import MONITOR_TARGETS, batch_images

if TYPE_CHECKING:
    from ergo_ray.config.schema import RunConfig, StorageConfig

__all__ = ["loop_config", "train_local", "train_loop_per_worker"]

log = logging.getLogger("ergo_ray")

# --------------------------------------------------------------------------------------
# Loop configuration and the Ray Train worker function


def loop_config(
    cfg: RunConfig,
    *,
    in_size: int,
    preprocess: Mapping[str, Any],
    out: str,
    epochs: int | None = None,
) -> dict[str, Any]:
    """Build the plain-dict configuration handed to every worker.

    Parameters
    ----------
    cfg : RunConfig
        The run configuration.
    in_size : int
        Stamp side of the prepared inputs.
    preprocess : mapping
        The preprocessing settings that produced the inputs (recorded with the encoder).
    out : str
        The output URL (metrics file).
    epochs : int, optional
        Overrides ``clr.epochs``.

    Returns
    -------
    dict
        ``clr``, ``preprocess``, ``in_size``, ``seed``, ``epochs``, ``out``, ``storage``.
    """
    clr = cfg.clr.model_dump(mode="json")
    if epochs is not None:
        clr["epochs"] = int(epochs)
    return {
        "clr": clr,
        "preprocess": dict(preprocess),
        "in_size": int(in_size),
        "seed": int(cfg.seed),
        "epochs": int(clr["epochs"]),
        "out": out,
        "storage": cfg.storage,
    }


#: Batches mixed by the training feed's shuffle window (on top of the per-pass file shuffle).
SHUFFLE_WINDOW_BATCHES = 8


def _shard_passes(shard: Any, batch_size: int, size: int, seed: int) -> Iterator[np.ndarray]:
    """Endless training batches: one pass over the shard after another.

    Rows are mixed in windows of :data:`SHUFFLE_WINDOW_BATCHES` batches by a permutation of
    the decoded uint8 stamps. Ray Data's ``local_shuffle_buffer_size`` does the same job on
    Arrow tables at about 30 ms per 128-image batch on one CPU core, 7 % of a training step
    of the ``local`` preset; the numpy window costs well under 1 ms.
    """
    n_pass = 0
    while True:
        rng = np.random.default_rng(seed + n_pass)
        window: list[np.ndarray] = []
        n = 0
        for b in shard.iter_batches(
            batch_size=batch_size, batch_format="pyarrow", drop_last=True, prefetch_batches=2
        ):
            n += 1
            window.append(batch_images(b, size))
            if len(window) == SHUFFLE_WINDOW_BATCHES:
                yield from _mixed(window, batch_size, rng)
                window = []
        if n == 0:
            msg = f"a worker's training shard has fewer rows than one batch ({batch_size})"
            raise InputError(msg)
        if window:
            yield from _mixed(window, batch_size, rng)
        n_pass += 1


def _mixed(
    window: list[np.ndarray], batch_size: int, rng: np.random.Generator
) -> Iterator[np.ndarray]:
    """Yield the window's rows in a random order, as full batches."""
    rows = np.concatenate(window)
    order = rng.permutation(len(rows))
    for start in range(0, len(rows) - batch_size + 1, batch_size):
        yield rows[np.sort(order[start : start + batch_size])]


def _shard_with_targets(shard: Any, batch_size: int, size: int) -> Iterator[TargetBatch]:
    for b in shard.iter_batches(batch_size=batch_size, batch_format="pyarrow", drop_last=False):
        yield (
            batch_images(b, size),
            {t: b[t].to_numpy(zero_copy_only=False).astype(np.float64) for t in MONITOR_TARGETS},
        )


def train_loop_per_worker(config: dict[str, Any]) -> None:
    """Ray Train entry point: NNCLR on this worker's shards of ``train``, ``val``, ``monitor``.

    Parameters
    ----------
    config : dict
        From :func:`loop_config`, optionally with ``after_epoch``: a picklable callable
        ``(epoch, rank)`` run on every worker once the epoch's checkpoint is reported (the
        fault-tolerance test raises from it to exercise ``FailureConfig`` retries).
    """
    import ray.train
    import ray.train.torch as rtt

    ctx = ray.train.get_context()
    # Threads: Ray sets OMP_NUM_THREADS from the worker's CPU request (fractional → 1); on
    # a shared CPU node more intra-op threads than cores slow every worker down.
    device = rtt.get_device()
    trainer = ClrTrainer(config, device)
    storage: StorageConfig | None = config.get("storage")
    epochs = int(config["epochs"])
    start = 0
    resumed = ray.train.get_checkpoint()
    if resumed is not None:
        with resumed.as_directory() as d:
            start = trainer.load(ckpt.load_training_state(d), source=resumed.path)
        log.info("resuming NNCLR at epoch %d from %s", start, resumed.path)
    trainer.model = rtt.prepare_model(trainer.model)
    trainer.criterion.synchronize()
    c, size, seed = trainer.clr, int(config["in_size"]), int(config.get("seed", 0))
    train_iter = _shard_passes(
        ray.train.get_dataset_shard("train"),
        c["batch_size"],
        size,
        seed + 31 * ctx.get_world_rank() + 1009 * start,
    )
    val_shard = ray.train.get_dataset_shard("val")
    ref_shard = ray.train.get_dataset_shard("monitor")
    metrics_url = st.join(config["out"], ckpt.METRICS_FILE)
    for epoch in range(start, epochs):
        metrics = trainer.run_epoch(
            epoch,
            train_iter,
            _shard_with_targets(val_shard, c["batch_size"], size),
            _shard_with_targets(ref_shard, c["batch_size"], size),
        )
        metrics["resumed_at_epoch"] = start
        state = trainer.state(epoch)
        with tempfile.TemporaryDirectory() as d:
            checkpoint = None
            if ctx.get_world_rank() == 0:
                ckpt.save_training_state(d, state)
                checkpoint = ray.train.Checkpoint.from_directory(d)
            ray.train.report(
                metrics, checkpoint=checkpoint, checkpoint_dir_name=f"epoch_{epoch:04d}"
            )
        if ctx.get_world_rank() == 0:
            ckpt.append_metrics(metrics_url, metrics, storage)
            log.info(
                "NNCLR epoch %d: %s",
                epoch,
                {k: round(v, 4) if isinstance(v, float) else v for k, v in metrics.items()},
            )
        if config.get("after_epoch") is not None:
            config["after_epoch"](epoch, ctx.get_world_rank())


# --------------------------------------------------------------------------------------
# The same loop without Ray


def train_local(
    config: Mapping[str, Any],
    train_images: np.ndarray,
    val: Mapping[str, np.ndarray],
    monitor: Mapping[str, np.ndarray],
    *,
    device: str | torch.device = "cpu",
    epochs: int | None = None,
) -> tuple[ClrTrainer, list[dict[str, Any]]]:
    """Train NNCLR in plain PyTorch on in-memory arrays (one process, no Ray).

    Parameters
    ----------
    config : mapping
        From :func:`loop_config`.
    train_images : numpy.ndarray
        uint8 (N, 3, S, S) training stamps.
    val, monitor : mapping of str to numpy.ndarray
        ``image`` plus :data:`~ergo_ray.train.data.MONITOR_TARGETS` for the validation and
        the k-NN reference samples (:func:`ergo_ray.train.data.read_split`).
    device : str or torch.device
        Training device.
    epochs : int, optional
        Overrides ``config["epochs"]``.

    Returns
    -------
    tuple of (ClrTrainer, list of dict)
        The trained state and the metrics of each epoch.
    """
    from ergo_ray.train.data import iterate_batches

    trainer = ClrTrainer(config, torch.device(device))
    c = trainer.clr
    batches = iterate_batches(train_images, c["batch_size"], seed=int(config.get("seed", 0)))

    def with_targets(d: Mapping[str, np.ndarray]) -> Iterator[TargetBatch]:
        for s in range(0, len(d["image"]), c["batch_size"]):
            yield (
                d["image"][s : s + c["batch_size"]],
                {t: np.asarray(d[t])[s : s + c["batch_size"]] for t in MONITOR_TARGETS},
            )

    history = []
    for epoch in range(int(epochs if epochs is not None else config["epochs"])):
        history.append(trainer.run_epoch(epoch, batches, with_targets(val), with_targets(monitor)))
    return trainer, history
