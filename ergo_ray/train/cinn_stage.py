"""The ``train-cinn`` stage: embed, train the cINN (and the baseline), write the model bundle.

Steps:

1. find the prepared inputs that carry truth (``true_*`` columns) and check the frozen
   encoder fits their stamps;
2. embed their train/val/test rows of the simulated domains (``cfg.cinn.domains``) with
   the encoder, as a Ray Data job (:mod:`ergo_ray.shared.embedding`); the representations
   are kept under ``OUT/_work/embeddings`` and reused by a re-run with the same encoder
   and inputs;
3. fit the target transform on the training split and train the cINN, conditioned on the
   representation (plus the catalogue columns of ``cinn.observables``), with Ray Train
   (:mod:`ergo_ray.train.cinn_loop`; checkpoints in ``OUT/_train/cinn``, resumed by a
   re-run); with ``baseline=True`` the same run then trains the same network conditioned
   on the standardised (log M*, z) only;
4. draw the OOD reference set and calibrate its score (:mod:`ergo_ray.shared.ood_score`);
5. measure calibration and accuracy on the test split
   (:mod:`ergo_ray.train.cinn_calibration`);
6. write the bundle (:mod:`ergo_ray.infer.bundle`).
"""

from __future__ import annotations

import hashlib
import json
import logging
from collections.abc import Sequence
from dataclasses import dataclass
from typing import TYPE_CHECKING, Any

import numpy as np
import pyarrow as pa

from ergo_ray.errors import CheckpointError, ConfigError, InputError, StorageError
from ergo_ray.io import storage as st
from ergo_ray.io.schemas import TRUTH_COLUMNS
from ergo_ray.models.cinn import CinnArch, ConditionalINN, draw_physical, index_seeds
from ergo_ray.models.observables import observable_values, source_columns
from ergo_ray.models.targets import Standardizer, TargetTransform, encode_truth
from ergo_ray.shared import bundle_format as bd
from ergo_ray.shared.bundle_format import BASELINE_INPUTS, bundle_files, jsonable
from ergo_ray.shared.embedding import (
    embed_dataset,
    read_representations,
    representation_matrix,
    write_filesystem,
)
from ergo_ray.shared.ood_score import OodReference, build_reference
from ergo_ray.train.cinn_calibration import latent_normality, posterior_metrics
from ergo_ray.train.cinn_fit import loop_config
from ergo_ray.train.cinn_loop import TrainJob, run_training

if TYPE_CHECKING:
    from ergo_ray.config.schema import RunConfig, StorageConfig
    from ergo_ray.io.prepared import PreparedInput

log = logging.getLogger("ergo_ray")

__all__ = ["train_cinn"]



def _encoder_file(url: str) -> str:
    return url if str(url).endswith(".pt") else st.join(url, "encoder.pt")


def _effective_preprocess(
    cfg: RunConfig, inputs: Sequence[Any], meta: dict[str, Any], size: int
) -> RunConfig:
    """Return the run config with the ``preprocess`` section the training stamps were made with.

    Every input that records its settings (``_meta/config.yaml``) must record the same
    ones; without any, the encoder's, else the run's, are used.

    Raises
    ------
    InputError
        If two inputs were prepared with different settings (naming both), or an input's
        settings are not a valid ``preprocess`` section (naming it).
    """
    from pydantic import ValidationError

    from ergo_ray.config.schema import PreprocessConfig

    known = set(PreprocessConfig.model_fields)
    recorded: list[tuple[str, PreprocessConfig]] = []
    for inp in inputs:
        if not inp.preprocess:
            continue
        data = {k: v for k, v in dict(inp.preprocess).items() if k in known}
        data["size"] = int(size)
        try:
            recorded.append((inp.url, PreprocessConfig.model_validate(data)))
        except ValidationError as err:
            msg = (f"{st.redact(inp.url)}: its preprocess settings (_meta/config.yaml) are "
                   f"not valid: {err.errors()[0]['loc']} {err.errors()[0]['msg']}")
            raise InputError(msg, inp.url) from err
    for url, pre in recorded[1:]:
        first_url, first = recorded[0]
        if pre != first:
            diff = sorted(k for k in known if getattr(pre, k) != getattr(first, k))
            msg = (f"{st.redact(first_url)} and {st.redact(url)} were prepared with "
                   f"different preprocess settings ({', '.join(diff)}); prepare them "
                   f"alike")
            raise InputError(msg, url)
    if recorded:
        return cfg.model_copy(update={"preprocess": recorded[0][1]})
    section = meta.get("preprocess") or cfg.preprocess.model_dump()
    data = {k: v for k, v in dict(section).items() if k in known}
    data["size"] = int(size)
    pre = PreprocessConfig.model_validate(data)
    return cfg.model_copy(update={"preprocess": pre})


def _embed(
    cfg: RunConfig,
    files: list[str],
    encoder_url: str,
    sha: str,
    size: int,
    out_url: str,
    use_gpu: bool,
) -> pa.Table:
    """Embed (or reuse the embeddings of) the simulated domains' rows."""
    storage = cfg.storage
    work = st.join(out_url, "_work", "embeddings")
    marker_url = st.join(out_url, "_work", "embeddings.json")
    marker = {
        "encoder_sha256": sha,
        "files": sorted(files),
        "domains": list(cfg.cinn.domains),
    }
    if st.exists(marker_url, storage):
        try:
            if json.loads(st.read_bytes(marker_url, storage)) == marker:
                log.info("reusing the representations in %s", st.redact(work))
                return read_representations(work, storage)
        except (ValueError, StorageError):
            pass
    st.remove(marker_url, storage)
    st.remove(work, storage, recursive=True)
    gpus = float(cfg.infer.gpus_per_actor or 1.0) if use_gpu else 0.0
    ds = embed_dataset(
        files,
        encoder_url,
        image_size=size,
        storage=storage,
        sha256=sha,
        domains=cfg.cinn.domains,
        splits=("train", "val", "test"),
        batch_size=cfg.infer.batch_size,
        actors=(cfg.infer.actors_min, cfg.infer.actors_max),
        num_cpus=cfg.infer.cpus_per_actor,
        num_gpus=gpus,
        mixed_precision=cfg.infer.mixed_precision,
    )
    fs, path = write_filesystem(work, storage)
    ds.write_parquet(path, filesystem=fs)
    st.write_bytes(marker_url, json.dumps(marker).encode(), storage)
    return read_representations(work, storage)


def _column(table: pa.Table, name: str) -> np.ndarray:
    if name not in table.column_names:
        return np.full(table.num_rows, np.nan)
    return table.column(name).to_numpy(zero_copy_only=False).astype(np.float64)


def _sample(
    model: ConditionalINN,
    transform: TargetTransform,
    cond: np.ndarray,
    n_samples: int,
    seed: int,
) -> np.ndarray:
    import torch

    dev = torch.device("cuda" if torch.cuda.is_available() else "cpu")
    seeds = index_seeds(seed, len(cond))
    out = draw_physical(model.to(dev), transform, cond, n_samples, seeds, dev).cpu().numpy()
    model.cpu()
    return out


def _evaluate(
    model: ConditionalINN,
    transform: TargetTransform,
    cond: np.ndarray,
    y: np.ndarray,
    log_mstar: np.ndarray,
    cfg: RunConfig,
) -> dict[str, Any]:
    samples = _sample(model, transform, cond, cfg.infer.n_samples, cfg.seed)
    out = posterior_metrics(samples, y, log_mstar, grid=cfg.infer.kde_grid)
    out["latent"] = latent_normality(
        model, np.asarray(transform.forward(y), np.float32), cond
    )
    return out


def _truth_inputs(
    data_urls: Sequence[str], storage: StorageConfig | None
) -> list[PreparedInput]:
    """Return the prepared inputs with truth columns (the simulated domains).

    Raises
    ------
    InputError
        If none has truth.
    """
    from ergo_ray.io.prepared import discover_inputs

    inputs = [p for p in discover_inputs(list(data_urls), storage)
              if "true_exsitu_frac" in p.columns]
    if not inputs:
        msg = "no --data input has truth columns (true_*); the cINN trains on simulated domains"
        raise InputError(msg, source=str(data_urls[0]))
    return inputs


def _read_encoder(
    enc_file: str, size: int, storage: StorageConfig | None
) -> tuple[bytes, dict[str, Any], int]:
    """Return the encoder file's bytes, its metadata and its representation length.

    Raises
    ------
    CheckpointError
        If the file cannot be read, or the encoder takes stamps of another size.
    """
    from ergo_ray.train.checkpoint import load_encoder

    try:
        enc_bytes = st.read_bytes(enc_file, storage)
    except StorageError as err:
        msg = f"cannot read the encoder: {err}"
        raise CheckpointError(msg) from err
    encoder, meta = load_encoder(enc_file, storage)
    if int(meta.get("in_size", size)) != size:
        msg = (
            f"{st.redact(enc_file)}: encoder takes {meta.get('in_size')} px stamps but the "
            f"inputs are {size} px"
        )
        raise CheckpointError(msg)
    return enc_bytes, meta, int(meta.get("rep_dim", encoder.rep_dim))


def train_cinn(
    data_urls: Sequence[str],
    encoder_url: str,
    out_url: str,
    cfg: RunConfig,
    *,
    workers: int | None = None,
    use_gpu: bool | None = None,
    baseline: bool = False,
) -> str:
    """Run the whole ``train-cinn`` stage and write the model bundle.

    Parameters
    ----------
    data_urls : sequence of str
        Prepared-shard folders; those with truth columns are used.
    encoder_url : str
        The ``train-nnclr`` output folder or its ``encoder.pt``.
    out_url : str
        Bundle folder.
    cfg : RunConfig
        Run configuration.
    workers : int, optional
        Ray Train workers (default ``cfg.cluster.workers``).
    use_gpu : bool, optional
        GPU workers and embedding actors (default ``cfg.cluster.use_gpu``).
    baseline : bool
        Also train the (log M*, z) baseline into ``baseline.pt``.

    Returns
    -------
    str
        The bundle's ``model_id``.

    Raises
    ------
    InputError
        If no input has truth, or a split has no usable rows.
    CheckpointError
        If the encoder does not fit the inputs.
    """
    from ergo_ray.runtime import scaling_config

    storage = cfg.storage
    gpu = cfg.cluster.use_gpu if use_gpu is None else use_gpu
    inputs = _truth_inputs(data_urls, storage)
    size = inputs[0].image_size
    enc_file = _encoder_file(encoder_url)
    enc_bytes, meta, rep_dim = _read_encoder(enc_file, size, storage)
    sha = hashlib.sha256(enc_bytes).hexdigest()
    run_cfg = _effective_preprocess(cfg, inputs, meta, size)

    files = [f for p in inputs for f in p.files]
    table = _embed(cfg, files, enc_file, sha, size, out_url, gpu)
    data = _training_data(table, cfg, source=str(data_urls[0]))
    transform = TargetTransform.fit(data.y[data.rows["train"]], cfg.cinn.exsitu_transform)
    ystd = np.asarray(transform.forward(data.y), np.float32)
    jobs = [_cinn_job(cfg, data, ystd)]
    base = _baseline_job(cfg, data, ystd, source=str(data_urls[0])) if baseline else None
    if base is not None:
        jobs.append(base.job)
    trained = run_training(out_url, jobs, scaling_config(cfg, workers, gpu), storage)
    metrics, weights = _test_and_weights(cfg, trained, transform, data, base)
    files_out = {"encoder.pt": enc_bytes, **weights}
    ood = _ood_reference(cfg, data)
    metrics["ood"] = {"n_reference": len(ood.reference), "k": ood.k, "metric": ood.metric,
                      "norm": ood.norm}
    files_out.update(bundle_files(
        transform=transform, run_cfg=run_cfg, ood=ood, metrics=metrics, input_size=size,
        rep_dim=rep_dim, observables=cfg.cinn.observables,
        baseline_scaler=base.scaler if base is not None else None))
    return bd.write_bundle(out_url, files_out, storage)


@dataclass(frozen=True)
class _TrainingData:
    """The embedded rows of the simulated domains, ready for the cINN."""

    reps: np.ndarray          # (N, D) representations
    cond: np.ndarray          # (N, D + len(observables)) condition
    y: np.ndarray             # (N, 3) encoded truth
    log_mstar: np.ndarray     # (N,)
    redshift: np.ndarray      # (N,)
    rows: dict[str, np.ndarray]  # usable row indices of train, val, test


def _training_data(table: pa.Table, cfg: RunConfig, source: str) -> _TrainingData:
    """Build the condition and the targets, and the usable rows of each split."""
    if table.num_rows == 0:
        msg = f"no rows of domains {list(cfg.cinn.domains)} in the inputs"
        raise InputError(msg, source=source)
    reps = representation_matrix(table)
    split = np.asarray(table.column("split").to_pylist(), dtype=object)
    y, usable = encode_truth(*(_column(table, c) for c in TRUTH_COLUMNS))
    observables = cfg.cinn.observables
    absent = [c for c in source_columns(observables) if c not in table.column_names]
    if absent:
        msg = (
            f"the inputs have no {', '.join(absent)} column, which cinn.observables "
            f"{list(observables)} conditions the cINN on"
        )
        raise InputError(msg, source=source)
    obs = observable_values(observables, lambda c: _column(table, c), table.num_rows)
    cond = np.concatenate([reps, *(obs[c][:, None] for c in observables)], axis=1)
    usable &= np.isfinite(cond).all(axis=1)
    rows = {s: np.flatnonzero((split == s) & usable) for s in ("train", "val", "test")}
    log.info(
        "cINN rows: train %d, val %d, test %d (of %d embedded); condition: the "
        "representation%s",
        len(rows["train"]),
        len(rows["val"]),
        len(rows["test"]),
        table.num_rows,
        "".join(f" + {c}" for c in observables),
    )
    if len(rows["train"]) < 2:
        msg = f"too few usable training rows for the cINN ({len(rows['train'])})"
        raise InputError(msg, source=source)
    return _TrainingData(reps, cond, y, _column(table, "log_mstar"),
                         _column(table, "redshift"), rows)


def _cinn_job(cfg: RunConfig, data: _TrainingData, ystd: np.ndarray) -> TrainJob:
    """Return the job of the cINN conditioned on the representation (and the observables)."""
    tr, va = data.rows["train"], data.rows["val"]
    arch = CinnArch.from_config(cfg.cinn, data.cond.shape[1], init_seed=cfg.seed)
    cond_scaler = Standardizer.fit(data.cond[tr])
    return TrainJob(
        "cinn",
        ystd[tr],
        data.cond[tr],
        ystd[va],
        data.cond[va],
        loop_config(cfg, arch, cfg.seed, (cond_scaler.mean, cond_scaler.scale)),
    )


@dataclass(frozen=True)
class _Baseline:
    job: TrainJob
    scaler: Standardizer
    cond: np.ndarray       # (N, 2) standardised (log M*, z); 0 where either is missing
    test_rows: np.ndarray


def _baseline_job(
    cfg: RunConfig, data: _TrainingData, ystd: np.ndarray, source: str
) -> _Baseline:
    """Return the job of the same network conditioned on the standardised (log M*, z) only."""
    base_cond = np.stack([data.log_mstar, data.redshift], axis=1)
    ok_b = np.isfinite(base_cond).all(axis=1)
    tr_b, va_b, te_b = (r[ok_b[r]] for r in (data.rows[s] for s in ("train", "val", "test")))
    if len(tr_b) < 2:
        msg = "too few training rows with log_mstar and redshift for the baseline"
        raise InputError(msg, source=source)
    base_scaler = Standardizer.fit(base_cond[tr_b])
    cstd = np.asarray(
        base_scaler.forward(np.where(ok_b[:, None], base_cond, 0.0)), np.float32
    )
    arch_b = CinnArch.from_config(cfg.cinn, len(BASELINE_INPUTS), init_seed=cfg.seed)
    job = TrainJob(
        "baseline",
        ystd[tr_b],
        cstd[tr_b],
        ystd[va_b],
        cstd[va_b],
        loop_config(cfg, arch_b, cfg.seed),
    )
    return _Baseline(job, base_scaler, cstd, te_b)


def _test_and_weights(
    cfg: RunConfig,
    trained: dict[str, tuple[ConditionalINN, dict[str, Any]]],
    transform: TargetTransform,
    data: _TrainingData,
    base: _Baseline | None,
) -> tuple[dict[str, Any], dict[str, bytes]]:
    """Return the metrics on the test split and the weight files of the trained networks."""
    te = data.rows["test"]
    model, hist = trained["cinn"]
    metrics: dict[str, Any] = {
        "n_rows": {k: len(v) for k, v in data.rows.items()},
        "domains": list(cfg.cinn.domains),
        "training": _training_summary(hist, with_history=True),
        "test": _evaluate(model, transform, data.cond[te], data.y[te], data.log_mstar[te], cfg),
    }
    files_out: dict[str, bytes] = {"cinn.pt": bd.torch_bytes(model.payload())}
    if base is not None:
        bmodel, bhist = trained["baseline"]
        te_b = base.test_rows
        metrics["baseline"] = {
            "inputs": list(BASELINE_INPUTS),
            "training": _training_summary(bhist, with_history=False),
            "test": _evaluate(bmodel, transform, base.cond[te_b], data.y[te_b],
                              data.log_mstar[te_b], cfg),
        }
        files_out["baseline.pt"] = bd.torch_bytes(bmodel.payload())
    return metrics, files_out


def _ood_reference(cfg: RunConfig, data: _TrainingData) -> OodReference:
    """Draw the OOD reference set from the training representations and calibrate it."""
    return build_reference(
        data.reps[data.rows["train"]],
        n_reference=cfg.cinn.n_ood_reference,
        k=cfg.ood.k,
        metric=cfg.ood.metric,
        quantile=cfg.ood.quantile,
        seed=cfg.ood.seed,
        max_holdout=cfg.ood.max_per_set,
        fallback_holdout=data.reps[data.rows["val"]],
    )



def _training_summary(hist: dict[str, Any], with_history: bool) -> dict[str, Any]:
    out = {
        "epochs": hist["epoch"] + 1,
        "best_val_nll": jsonable(float(hist["best_val"])),
        "early_stopped": bool(hist["stopped"]),
    }
    if with_history:
        out["history"] = hist["history"]
    return out


def check_options(workers: int | None) -> None:
    """Validate stage options before Ray starts.

    Raises
    ------
    ConfigError
        For a negative worker count.
    """
    if workers is not None and workers < 0:
        msg = f"--workers must be >= 0, got {workers}"
        raise ConfigError(msg)
