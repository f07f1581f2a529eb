"""Where a bundle's networks run when no device is asked for (``default_device``).

The warning for a Ray GPU that torch cannot see is checked on a cluster with logical
GPUs, in ``tests/integration/test_autoscaling.py``.
"""

from __future__ import annotations

import logging

import pytest
import torch

from ergo_ray.infer.device import default_device


@pytest.mark.skipif(torch.cuda.is_available(), reason="a CUDA device is present")
def test_default_device_outside_ray_is_the_cpu_without_a_warning(caplog):
    with caplog.at_level(logging.WARNING, logger="ergo_ray"):
        assert default_device() == torch.device("cpu")
    assert not [r for r in caplog.records if "CUDA" in r.getMessage()]
