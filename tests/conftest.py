"""Shared fixtures: one loopback S3 server (moto) and one local Ray per session."""

from __future__ import annotations

import logging
import os
import uuid

from ergo_ray.runtime import set_env_defaults  # before anything imports ray

set_env_defaults()
os.environ.setdefault("RAY_DATA_DISABLE_PROGRESS_BARS", "1")
os.environ.setdefault("RAY_AUTH_MODE", "disabled")
os.environ.setdefault("MPLBACKEND", "Agg")
for _var in ("RAY_ADDRESS", "AWS_PROFILE", "AWS_ENDPOINT_URL", "AWS_ENDPOINT_URL_S3"):
    os.environ.pop(_var, None)

import pytest  # noqa: E402

#: Set to 1 on a machine that has a GPU: a `gpu` test that cannot see CUDA then stops the
#: run instead of being skipped (a CPU-only torch build would otherwise pass unnoticed).
REQUIRE_GPU_ENV = "ERGO_RAY_REQUIRE_GPU"


@pytest.hookimpl(trylast=True)  # after `-m` has deselected
def pytest_collection_modifyitems(config, items):
    """Tests marked ``gpu`` run where CUDA is present and are skipped, with the reason,
    elsewhere; with ``ERGO_RAY_REQUIRE_GPU=1`` a missing CUDA device is an error."""
    gpu_items = [item for item in items if item.get_closest_marker("gpu")]
    if not gpu_items:
        return
    import torch

    if torch.cuda.is_available():
        return
    if os.environ.get(REQUIRE_GPU_ENV) == "1":
        msg = (f"{REQUIRE_GPU_ENV}=1 but torch {torch.__version__} sees no CUDA device; "
               f"{len(gpu_items)} gpu tests cannot run")
        raise pytest.UsageError(msg)
    skip = pytest.mark.skip(reason="needs a CUDA device")
    for item in gpu_items:
        item.add_marker(skip)


@pytest.fixture(scope="session")
def s3_endpoint():
    """A real S3 HTTP endpoint on 127.0.0.1 (moto's threaded server, as s3fs's tests use)."""
    from moto.server import ThreadedMotoServer

    logging.getLogger("werkzeug").setLevel(logging.ERROR)
    server = ThreadedMotoServer(ip_address="127.0.0.1", port=0, verbose=False)
    server.start()
    host, port = server.get_host_and_port()
    os.environ.update(
        AWS_ACCESS_KEY_ID="testing",
        AWS_SECRET_ACCESS_KEY="testing",
        AWS_DEFAULT_REGION="us-east-1",
        BOTO_CONFIG="/dev/null",
    )
    yield f"http://{host}:{port}"
    server.stop()


@pytest.fixture
def bucket(s3_endpoint):
    """A fresh bucket on the loopback endpoint; returns its name."""
    import boto3

    name = f"t-{uuid.uuid4().hex[:10]}"
    boto3.client("s3", endpoint_url=s3_endpoint, region_name="us-east-1").create_bucket(
        Bucket=name
    )
    return name


@pytest.fixture
def storage_cfg(s3_endpoint):
    """A StorageConfig pointing at the loopback endpoint."""
    from ergo_ray.config.schema import StorageConfig

    return StorageConfig(endpoint_url=s3_endpoint, region="us-east-1")


@pytest.fixture
def s3_overrides(s3_endpoint):
    """``--set`` overrides that point a CLI stage at the loopback endpoint."""
    return ["--set", f"storage.endpoint_url={s3_endpoint}", "--set", "storage.region=us-east-1"]


@pytest.fixture(scope="session")
def ray_session(s3_endpoint):
    """One local Ray instance for the session (4 logical CPUs on 2 cores, see ray notes §0.3)."""
    import ray

    if ray.is_initialized():
        raise RuntimeError("Ray already initialised; the test suite owns the instance")
    import torch

    ray.init(
        num_cpus=4,
        # one GPU where CUDA is present, for the `gpu` catalogue tests (gpus_per_actor=1)
        num_gpus=1 if torch.cuda.is_available() else 0,
        include_dashboard=False,
        object_store_memory=400 * 1024**2,
        logging_level=logging.WARNING,
        log_to_driver=False,
    )
    yield ray
    ray.shutdown()
