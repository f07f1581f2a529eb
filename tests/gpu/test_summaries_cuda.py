"""Posterior summaries on CUDA: the same float64 values as on the CPU, and scipy's MAP."""

from __future__ import annotations

import numpy as np
import torch

from ergo_ray.shared.summaries import kde_map, map_reference, summarize
from tests.gpu.conftest import GPU

pytestmark = GPU


def _samples(n: int, s: int, seed: int) -> np.ndarray:
    """Unimodal and bimodal posteriors, with no-merger samples and a few NaNs."""
    rng = np.random.default_rng(seed)
    out = np.empty((n, s, 3))
    out[..., 0] = rng.uniform(0, 1, (n, 1)) + rng.normal(0, 0.1, (n, s))
    out[..., 1] = rng.uniform(1, 12, (n, 1)) + rng.normal(0, 1.0, (n, s))
    out[..., 2] = rng.uniform(8, 11, (n, 1)) + rng.normal(0, 0.3, (n, s))
    two = rng.random((n, s)) < 0.35
    out[::2, :, 0] = np.where(two[::2], out[::2, :, 0] + 0.5, out[::2, :, 0])
    out[1::5, ::4, 1] = 15.0  # a quarter of the samples say "no major merger"
    out[2::7, :, 2] = 6.0  # every sample does
    out[3, :3, 0] = np.nan
    return out


def test_summaries_on_cuda_equal_the_cpu_ones():
    s = _samples(2500, 400, seed=1)
    ref = summarize(s, device="cpu")
    # several KDE blocks on the device, from a CUDA tensor
    got = summarize(torch.from_numpy(s).to("cuda"), device="cuda", chunk=1024)
    assert list(got) == list(ref)
    for col, want in ref.items():
        assert got[col].dtype == np.float64
        np.testing.assert_allclose(
            got[col], want, rtol=1e-9, atol=1e-9, equal_nan=True, err_msg=col
        )
    # the test covers the NaN paths: no-merger galaxies and partial no-merger ones
    assert np.isnan(ref["lmm_log_mass_map"][2]) and ref["p_no_major_merger"][1] == 0.25


def test_kde_map_on_cuda_is_scipys_map():
    s = _samples(40, 400, seed=2)[..., 0]
    s = s[np.isfinite(s).all(axis=1)]
    srt = torch.sort(torch.from_numpy(s).to("cuda"), dim=1).values
    n = torch.full((len(s),), s.shape[1], device="cuda")
    std1 = srt.std(dim=1)
    got = kde_map(srt, n, std1, grid=512)
    assert got.device.type == "cuda"
    ref = np.array([map_reference(row, grid=512) for row in s])
    step = (s.max(axis=1) - s.min(axis=1)) / 511
    # the binned KDE matches the exact one to a small fraction of a grid step
    assert (np.abs(got.cpu().numpy() - ref) <= 1.01 * step).all()
