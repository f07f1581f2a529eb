"""The driver of ``ergo-ray train-nnclr``: inputs checked, Ray Train run, encoder exported.

:func:`fit_nnclr` builds the Ray Data datasets (:mod:`ergo_ray.train.data`), runs
:func:`~ergo_ray.train.clr_loop.train_loop_per_worker` in a ``TorchTrainer`` whose
``RunConfig(name="nnclr", storage_path=OUT)`` makes a re-run of the same command resume
from the last checkpoint, and exports the final encoder to ``OUT/encoder.pt``.
"""

from __future__ import annotations

import logging
from collections.abc import Mapping, Sequence
from typing import TYPE_CHECKING, Any

from ergo_ray.errors import CheckpointError, ConfigError, ErgoRayError, InputError
from ergo_ray.io import storage as st
from ergo_ray.io.prepared import PreparedInput
from ergo_ray.models.encoder import build_encoder
from ergo_ray.train import checkpoint as ckpt
from ergo_ray.train.clr_loop import loop_config, train_loop_per_worker

if TYPE_CHECKING:
    import ray.train

    from ergo_ray.config.schema import RunConfig, StorageConfig

__all__ = ["RUN_NAME", "check_inputs", "fit_nnclr", "resolve_preprocess"]

log = logging.getLogger("ergo_ray")

#: Ray Train run name under ``--out``: re-running the same command finds its checkpoints.
RUN_NAME = "nnclr"


def resolve_preprocess(cfg: RunConfig, inputs: Sequence[Any]) -> dict[str, Any]:
    """Return the preprocessing settings that produced the inputs (kept with the encoder).

    Taken from the inputs' ``_meta/config.yaml`` when present, otherwise from ``cfg``.

    Raises
    ------
    InputError
        If the inputs were prepared with different settings.
    ConfigError
        If the stamps' size disagrees with ``preprocess.size`` and the inputs carry no record.
    """
    size = inputs[0].image_size
    recorded = [p.preprocess for p in inputs if p.preprocess is not None]
    if recorded:
        def key(d: Mapping[str, Any]) -> dict[str, Any]:
            return {k: v for k, v in d.items() if k != "rows_per_file"}

        first = recorded[0]
        if any(key(r) != key(first) for r in recorded[1:]):
            raise InputError("the prepared inputs were made with different preprocess settings; "
                             "prepare them alike", source=inputs[0].url)
        if int(first.get("size", size)) != size:
            raise InputError(f"{st.redact(inputs[0].url)}: stamps are {size} px but its "
                             f"config records preprocess.size={first.get('size')}",
                             source=inputs[0].url)
        return dict(first)
    if cfg.preprocess.size != size:
        raise ConfigError(f"the prepared stamps are {size} px but preprocess.size is "
                          f"{cfg.preprocess.size}; pass --set preprocess.size={size}")
    return cfg.preprocess.model_dump(mode="json")


def check_inputs(cfg: RunConfig, data: Sequence[str], *, workers: int | None = None,
                 epochs: int | None = None) -> list[PreparedInput]:
    """Check options and inputs of a training run before any Ray work starts.

    Parameters
    ----------
    cfg : RunConfig
        The run configuration.
    data : sequence of str
        Prepared-shard folders.
    workers : int, optional
        Ray Train workers (default ``cluster.workers``).
    epochs : int, optional
        Total epochs.

    Returns
    -------
    list of PreparedInput
        The discovered inputs.

    Raises
    ------
    ConfigError
        For a bad worker or epoch count or a preprocess size that disagrees with the data.
    InputError
        For unusable inputs.
    """
    from ergo_ray.io.prepared import discover_inputs

    n_workers = cfg.cluster.workers if workers is None else workers
    if n_workers < 1:
        raise ConfigError(f"--workers must be at least 1, got {n_workers}")
    if epochs is not None and epochs < 1:
        raise ConfigError(f"--epochs must be at least 1, got {epochs}")
    if cfg.clr.support_set == "global" and \
            cfg.clr.memory_bank_size < n_workers * cfg.clr.batch_size:
        log.warning("clr.memory_bank_size=%d is smaller than workers × batch (%d)",
                    cfg.clr.memory_bank_size, n_workers * cfg.clr.batch_size)
    inputs = discover_inputs(data, cfg.storage)
    resolve_preprocess(cfg, inputs)
    return inputs


def fit_nnclr(
    cfg: RunConfig,
    *,
    data: Sequence[str],
    out: str,
    workers: int | None = None,
    use_gpu: bool | None = None,
    epochs: int | None = None,
    extra_config: Mapping[str, Any] | None = None,
    inputs: Sequence[PreparedInput] | None = None,
) -> dict[str, Any]:
    """Train NNCLR with Ray Train and export the encoder (``ergo-ray train-nnclr``).

    Re-running with the same ``out`` resumes from the last checkpoint under
    ``OUT/nnclr/`` and trains up to ``epochs`` in total; worker failures are retried
    (``FailureConfig(max_failures=2)``).

    Parameters
    ----------
    cfg : RunConfig
        The run configuration.
    data : sequence of str
        Prepared-shard folders.
    out : str
        Output URL: ``OUT/nnclr/`` (Ray Train checkpoints), ``OUT/metrics.jsonl``,
        ``OUT/encoder.pt``.
    workers : int, optional
        Ray Train workers (default ``cluster.workers``).
    use_gpu : bool, optional
        One GPU per worker (default ``cluster.use_gpu``).
    epochs : int, optional
        Total epochs (default ``clr.epochs``).
    extra_config : mapping, optional
        Extra keys for the worker configuration (testing hooks).
    inputs : sequence of PreparedInput, optional
        ``data`` already checked by :func:`check_inputs` (skips a second listing).

    Returns
    -------
    dict
        ``epochs`` trained in total, ``metrics`` of the last epoch, ``encoder`` URL,
        ``checkpoint`` path.

    Raises
    ------
    ConfigError, InputError
        Before Ray work starts, for bad settings or inputs.
    ErgoRayError
        If training fails after the retries.
    """
    from ray.train.torch import TorchTrainer

    from ergo_ray import runtime
    from ergo_ray.train.data import build_datasets

    n_workers = cfg.cluster.workers if workers is None else workers
    if inputs is None:
        inputs = check_inputs(cfg, data, workers=n_workers, epochs=epochs)
    preprocess = resolve_preprocess(cfg, inputs)
    config = loop_config(cfg, in_size=inputs[0].image_size, preprocess=preprocess, out=out,
                         epochs=epochs)
    config |= dict(extra_config or {})
    datasets = build_datasets(inputs, cfg.storage, domain_mix=cfg.clr.domain_mix,
                              monitor_rows=cfg.clr.monitor_rows, seed=cfg.seed)
    trainer = TorchTrainer(
        train_loop_per_worker, train_loop_config=config,
        scaling_config=runtime.scaling_config(cfg, n_workers, use_gpu),
        run_config=_run_config(out, cfg.storage), datasets=datasets,
    )
    result = _fit(trainer, out)
    with result.checkpoint.as_directory() as d:
        state = ckpt.load_training_state(d)
    encoder_url = _export_encoder(state, config, preprocess, out, cfg.storage)
    history = ckpt.read_metrics(st.join(out, ckpt.METRICS_FILE), cfg.storage)
    return {"epochs": int(state["epoch"]) + 1, "metrics": history[-1] if history else {},
            "encoder": encoder_url, "checkpoint": result.checkpoint.path}


def _run_config(out: str, storage: StorageConfig | None) -> ray.train.RunConfig:
    """Return Ray Train's run settings: checkpoints under ``OUT/nnclr``, retries."""
    import ray.train

    fs, path = _train_storage(out, storage)
    return ray.train.RunConfig(
        name=RUN_NAME, storage_path=path, storage_filesystem=fs,
        failure_config=ray.train.FailureConfig(max_failures=2),
        checkpoint_config=ray.train.CheckpointConfig(num_to_keep=2),
    )


def _fit(trainer: Any, out: str) -> Any:
    """Run the trainer; return its result, which holds a checkpoint.

    Raises
    ------
    ErgoRayError
        The package's own error behind a worker failure, or one naming ``out``.
    CheckpointError
        If training produced no checkpoint.
    """
    try:
        result = trainer.fit()
    except Exception as err:  # Ray wraps worker errors in TrainingFailedError
        cause = _root_cause(err)
        if isinstance(cause, ErgoRayError):
            raise cause from err
        raise ErgoRayError(f"NNCLR training under {st.redact(out)} failed: {cause}") from err
    if result.checkpoint is None:
        raise CheckpointError(f"{st.redact(out)}: training produced no checkpoint")
    return result


def _export_encoder(
    state: Mapping[str, Any], config: Mapping[str, Any], preprocess: Mapping[str, Any],
    out: str, storage: StorageConfig | None,
) -> str:
    """Write the encoder of a training state to ``OUT/encoder.pt``; return its URL."""
    encoder_state = {k.removeprefix("encoder."): v for k, v in state["model"].items()
                     if k.startswith("encoder.")}
    encoder = build_encoder(config["clr"]["widths"], config["clr"]["blocks"],
                            config["clr"]["rep_dim"], config["in_size"])
    encoder.load_state_dict(encoder_state)
    encoder_url = st.join(out, ckpt.ENCODER_FILE)
    ckpt.export_encoder(encoder_url, encoder, clr=config["clr"], preprocess=preprocess,
                        in_size=config["in_size"], rep_dim=config["clr"]["rep_dim"],
                        epoch=state["epoch"], storage=storage)
    return encoder_url


def _train_storage(out: str, storage: StorageConfig | None) -> tuple[Any, str]:
    """Ray Train's ``storage_filesystem`` and ``storage_path`` for an output URL.

    Local folders need no filesystem. For S3 the s3fs client is handed to Ray as a pyarrow
    ``PyFileSystem``: pyarrow's native S3 client always completes uploads as multipart,
    which S3-compatible servers do not all answer as pyarrow expects (moto 5.2, the
    loopback test server, fails every upload: getmoto/moto#10055), while s3fs uses a
    single PUT for small objects and botocore's handling otherwise.
    """
    import pyarrow.fs as pafs

    loc = st.locate(out)
    if loc.scheme == "file":
        st.makedirs(out)
        return None, loc.path
    fs, path = st.fsspec_fs(out, storage)
    return pafs.PyFileSystem(pafs.FSSpecHandler(fs)), path


def _root_cause(err: BaseException) -> BaseException:
    seen = set()
    while id(err) not in seen:
        seen.add(id(err))
        nxt = getattr(err, "cause", None) or err.__cause__
        if isinstance(err, ErgoRayError) or nxt is None:
            return err
        err = nxt
    return err
