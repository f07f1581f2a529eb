"""A tiny ``ergo-ray demo`` on the loopback S3 endpoint, shared by the demo tests and the
``validate``/``compare`` tests (one mock → prepare → NNCLR → cINN chain per session)."""

from __future__ import annotations

import logging
import re
import uuid

import pytest

from ergo_ray.cli.main import main

from ..conftest import S3_LOG

#: ``--n`` of the shared demo: galaxies of ``tng100`` (the other domains scale from it).
DEMO_N = 32


class _StageMarker(logging.Handler):
    """Puts ("stage", name, "") into the S3 request log as each demo stage starts."""

    def __init__(self) -> None:
        super().__init__(logging.INFO)

    def emit(self, record: logging.LogRecord) -> None:
        m = re.fullmatch(r"\[\d+/\d+\] (.+) \.\.\.", record.getMessage())
        if m:
            S3_LOG.append(("stage", m.group(1), ""))


@pytest.fixture(scope="session")
def ci_demo(ray_session, s3_endpoint):
    """Run ``ergo-ray demo --preset ci`` into a fresh bucket; return its URL and settings.

    Returns
    -------
    dict
        ``root`` (the demo's ``--out``), ``common`` (the ``--preset``/``--set`` options
        every stage got) and ``storage`` (a StorageConfig for reading the outputs).
    """
    import boto3

    from ergo_ray.config.schema import StorageConfig

    name = f"demo-{uuid.uuid4().hex[:10]}"
    boto3.client("s3", endpoint_url=s3_endpoint, region_name="us-east-1").create_bucket(
        Bucket=name)
    root = f"s3://{name}/demo"
    common = ["--preset", "ci", "--set", f"storage.endpoint_url={s3_endpoint}",
              "--set", "storage.region=us-east-1",
              # the shift-aware widening, fitted on simba's few galaxies (issue 17)
              "--set", "cinn.widening.enabled=true", "--set", "cinn.widening.n_bins=2"]
    marker, logger = _StageMarker(), logging.getLogger("ergo_ray")
    level = logger.level
    logger.addHandler(marker)
    logger.setLevel(min(logging.INFO, logger.getEffectiveLevel()))  # the stage lines are INFO
    try:
        assert main(["demo", "--out", root, "--n", str(DEMO_N), *common]) == 0
    finally:
        logger.removeHandler(marker)
        logger.setLevel(level)
    return {"root": root, "common": common,
            "storage": StorageConfig(endpoint_url=s3_endpoint, region="us-east-1")}
