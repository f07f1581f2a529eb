"""Driver-side thread settings (no Ray)."""

from __future__ import annotations

import os

import pytest
import torch

from ergo_ray.runtime import driver_threads


def test_driver_threads_uses_the_process_cores_and_restores():
    before = torch.get_num_threads()
    with driver_threads() as n:
        assert n == len(os.sched_getaffinity(0)) == torch.get_num_threads()
    assert torch.get_num_threads() == before
    with pytest.raises(RuntimeError), driver_threads(1) as n:
        assert n == 1 == torch.get_num_threads()
        raise RuntimeError  # restored on the way out of a failing stage too
    assert torch.get_num_threads() == before
