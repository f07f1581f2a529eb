"""The only place that starts or connects to Ray and builds Ray Train configs.

Library code never calls ``ray.init``; CLI stages and jobs call :func:`ensure_ray`.
"""

from __future__ import annotations

import contextlib
import logging
import os
from collections.abc import Iterator, Mapping
from typing import TYPE_CHECKING, Any

from ergo_ray.config.schema import RunConfig

if TYPE_CHECKING:
    import ray.train

log = logging.getLogger("ergo_ray")

#: Environment defaults that keep Ray quiet and light on a laptop (ray-2.60-notes §0,
#: §6). ``read_parquet``'s default "datasource V2" path starts footer-reader actors
#: (new Python processes) for every read: about 1.5 s per read on 2 cores, paid by every
#: Train epoch that re-reads its shards. The V1 path lists on the driver and reads one
#: task per file (0.15 s for the same read, and finer resume granularity).
ENV_DEFAULTS = {
    "RAY_USAGE_STATS_ENABLED": "0",
    "RAY_DATA_USE_DATASOURCE_V2": "0",
    "RAY_DATA_PARQUET_FOOTER_NUM_ACTORS": "1",
    "RAY_DATA_DOWNLOAD_PARTITION_MAX_ACTORS": "2",
    "RAY_TRAIN_ENABLE_STATE_ACTOR_RECONCILIATION": "0",
    "OMP_NUM_THREADS": "1",
}

#: Run by every worker process of a local instance (``ergo_ray.worker_setup``).
WORKER_SETUP_HOOK = "ergo_ray.worker_setup.quiet_ray_internals"


def set_env_defaults() -> None:
    """Set Ray environment defaults that must be in place before ``import ray``."""
    for key, value in ENV_DEFAULTS.items():
        os.environ.setdefault(key, value)
    if not os.isatty(2):
        os.environ.setdefault("RAY_DATA_DISABLE_PROGRESS_BARS", "1")


#: Environment variables a job may carry to a cluster's workers in its
#: ``runtime_env``: where the object store is, never who may read it. Ray keeps a job's
#: runtime_env in the GCS and shows it (dashboard, ``ray list jobs --detail``, actor and
#: task details) to anyone who can reach the cluster, so credentials reach workers from
#: the nodes' own environment or identity instead (README "Object storage").
SHIPPABLE_ENV: tuple[str, ...] = (
    "AWS_ENDPOINT_URL",
    "AWS_ENDPOINT_URL_S3",
    "AWS_DEFAULT_REGION",
    "AWS_REGION",
)
_SECRET_WORDS = ("KEY", "SECRET", "TOKEN", "PASSWORD", "CREDENTIAL")


def shippable_env(environ: Mapping[str, str]) -> dict[str, str]:
    """Return the variables of ``environ`` that may travel in a job's runtime_env.

    Parameters
    ----------
    environ : mapping
        An environment, e.g. ``os.environ``.

    Returns
    -------
    dict
        :data:`SHIPPABLE_ENV` and ``ERGO_RAY_*`` settings that are set, less any whose
        name speaks of a key, secret, token, password or credential.
    """
    return {
        k: v
        for k, v in environ.items()
        if (k in SHIPPABLE_ENV or k.startswith("ERGO_RAY_"))
        and not any(w in k.upper() for w in _SECRET_WORDS)
    }


def ensure_ray(cfg: RunConfig) -> None:
    """Connect to the cluster in ``RAY_ADDRESS``, or start a local instance.

    A local instance, sized by the config, has workers that inherit this process's
    environment (credentials included); a cluster's workers use their nodes' own. Only
    :func:`shippable_env` travels in the job's runtime_env.

    Parameters
    ----------
    cfg : RunConfig
        Its ``cluster`` section sizes a local instance (logical CPUs, object store).
    """
    set_env_defaults()
    import ray

    if ray.is_initialized():
        return
    env_vars = shippable_env(os.environ)
    runtime_env: dict[str, Any] = {"env_vars": env_vars} if env_vars else {}
    if os.environ.get("RAY_ADDRESS"):
        log.info("connecting to the Ray cluster at RAY_ADDRESS")
        if "RAY_JOB_CONFIG_JSON_ENV_VAR" in os.environ:
            # A submitted job (``ray job submit``): the job's runtime_env and the nodes'
            # environment already reach every worker, and Ray refuses (printing both
            # environments, credentials included) env_vars keys the job's runtime_env
            # also sets.
            runtime_env = {}
        ray.init(runtime_env=runtime_env or None, logging_level=logging.WARNING)
        return
    kwargs: dict[str, Any] = {
        "include_dashboard": False,
        "logging_level": logging.WARNING,
    }
    runtime_env["worker_process_setup_hook"] = WORKER_SETUP_HOOK
    if cfg.cluster.local_num_cpus:
        kwargs["num_cpus"] = cfg.cluster.local_num_cpus
    if cfg.cluster.object_store_mb:
        kwargs["object_store_memory"] = cfg.cluster.object_store_mb * 1024**2
    ray.init(runtime_env=runtime_env or None, **kwargs)


@contextlib.contextmanager
def driver_threads(threads: int | None = None) -> Iterator[int]:
    """Let torch use this process's cores for a stage computed in the driver; restore.

    ``validate`` and ``compare`` sample posteriors and summarise them in the driver
    process, where ``OMP_NUM_THREADS=1`` (:data:`ENV_DEFAULTS`, meant for Ray's workers)
    would hold torch to one core.

    Parameters
    ----------
    threads : int, optional
        Threads (``evaluate.threads``); default: every core this process may run on.

    Yields
    ------
    int
        The thread count in effect.
    """
    import torch

    before = torch.get_num_threads()
    n = int(threads or len(os.sched_getaffinity(0)))
    torch.set_num_threads(n)
    try:
        yield n
    finally:
        torch.set_num_threads(before)


def scaling_config(
    cfg: RunConfig, workers: int | None = None, use_gpu: bool | None = None
) -> ray.train.ScalingConfig:
    """Build the Ray Train ``ScalingConfig`` of a training stage.

    Parameters
    ----------
    cfg : RunConfig
        The run configuration (``cluster`` section).
    workers : int, optional
        Overrides ``cluster.workers`` (``--workers``).
    use_gpu : bool, optional
        Overrides ``cluster.use_gpu`` (``--gpu``).

    Returns
    -------
    ray.train.ScalingConfig
        One GPU per worker when GPUs are used; fractional CPUs otherwise so that Ray
        Data's read tasks are not starved on small machines.
    """
    import ray.train

    n = cfg.cluster.workers if workers is None else workers
    gpu = cfg.cluster.use_gpu if use_gpu is None else use_gpu
    res: dict[str, float] = {"CPU": cfg.cluster.cpus_per_worker}
    if gpu:
        res["GPU"] = 1.0
    return ray.train.ScalingConfig(num_workers=n, use_gpu=gpu, resources_per_worker=res)
