"""Driver-side thread settings (no Ray)."""

from __future__ import annotations

import importlib
import logging
import os

import pytest
import torch

from ergo_ray.runtime import WORKER_SETUP_HOOK, driver_threads
from ergo_ray.worker_setup import NOISY_LOGGERS, quiet_ray_internals


def test_driver_threads_uses_the_process_cores_and_restores():
    before = torch.get_num_threads()
    with driver_threads() as n:
        assert n == len(os.sched_getaffinity(0)) == torch.get_num_threads()
    assert torch.get_num_threads() == before
    with pytest.raises(RuntimeError), driver_threads(1) as n:
        assert n == 1 == torch.get_num_threads()
        raise RuntimeError  # restored on the way out of a failing stage too
    assert torch.get_num_threads() == before


def test_worker_setup_silences_the_placement_group_cleaner_only():
    cleaner = logging.getLogger(NOISY_LOGGERS[0])
    before = cleaner.level
    try:
        quiet_ray_internals()
        assert not cleaner.isEnabledFor(logging.WARNING)
        assert cleaner.isEnabledFor(logging.ERROR)
        assert logging.getLogger("ray.train").isEnabledFor(logging.WARNING)
    finally:
        cleaner.setLevel(before)
    # the hook is named by its import path, as Ray's runtime_env needs
    module, _, func = WORKER_SETUP_HOOK.rpartition(".")
    assert getattr(importlib.import_module(module), func) is quiet_ray_internals


def test_shippable_env_keeps_where_the_store_is_never_who_may_read_it():
    from ergo_ray.runtime import shippable_env

    env = {"AWS_ACCESS_KEY_ID": "id", "AWS_SECRET_ACCESS_KEY": "s",
           "AWS_SESSION_TOKEN": "t", "AWS_SECURITY_TOKEN": "t", "AWS_PROFILE": "p",
           "AWS_DEFAULT_REGION": "eu-west-1",
           "AWS_REGION": "eu-west-1", "AWS_ENDPOINT_URL_S3": "http://127.0.0.1:9000",
           "ERGO_RAY_LOG": "debug", "ERGO_RAY_API_TOKEN": "x", "HOME": "/root"}
    assert shippable_env(env) == {
        "AWS_DEFAULT_REGION": "eu-west-1", "AWS_REGION": "eu-west-1",
        "AWS_ENDPOINT_URL_S3": "http://127.0.0.1:9000", "ERGO_RAY_LOG": "debug"}
