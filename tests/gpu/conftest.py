"""Fixtures of the CUDA tests: one trained model bundle, CPU references.

Every test here compares what runs on CUDA with the same computation on the CPU, so the
heavy imports stay inside the fixtures: on a machine without CUDA the modules are only
collected and skipped.
"""

from __future__ import annotations

import pytest
import torch

#: Marks and skip of every CUDA test module (``pytestmark = GPU``).
GPU = [
    pytest.mark.gpu,
    pytest.mark.skipif(not torch.cuda.is_available(), reason="needs a CUDA device"),
]

#: Largest relative difference (row norm) between a representation computed on CUDA under
#: float16 autocast (or with TF32 convolutions) and the float32 CPU one. float16 keeps 11
#: significant bits (relative rounding 4.9e-4); a float16 CPU autocast of the ci encoder
#: differs from float32 by at most 4.5e-4 per row.
REP_RTOL = 5e-3


def row_relative_error(a, b):
    """Per-row ``‖a − b‖ / ‖b‖`` of two (N, D) arrays."""
    import numpy as np

    a, b = np.asarray(a, np.float64), np.asarray(b, np.float64)
    return np.linalg.norm(a - b, axis=1) / np.linalg.norm(b, axis=1)


@pytest.fixture(scope="session")
def trained_bundle(tmp_path_factory):
    """A bundle with a trained cINN conditioned on the representation, redshift and i mag
    (the ``ci`` preset's 24 px encoder), written by the bundle unit tests' helper."""
    from tests.unit.infer.test_bundle import _write

    tmp = tmp_path_factory.mktemp("gpu-bundle")
    url = str(tmp / "model")
    _write(url, tmp, baseline=True, observables=("redshift", "i_mag"))
    return url


@pytest.fixture(scope="session")
def galaxies():
    """64 prepared stamps with their IDs and catalogue observables."""
    import numpy as np

    from tests.unit.infer.test_bundle import _images

    n = 64
    rng = np.random.default_rng(5)
    return {
        "images": _images(n, 5),
        "ids": [f"hsc-gpu-{i:05d}" for i in range(n)],
        "observables": {
            "redshift": rng.uniform(0.1, 0.4, n),
            "i_mag": rng.uniform(15, 20, n),
        },
    }
