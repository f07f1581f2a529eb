"""Encoder, cINN and model bundle on CUDA against the same computation on the CPU.

Float32 on CUDA differs from the CPU in the last bits (and convolutions use TF32 by
default); the encoder under float16 autocast differs by the float16 rounding
(:data:`REP_RTOL`). Sampling and summaries run in float32/float64 and must agree closely.
"""

from __future__ import annotations

import numpy as np
import pytest
import torch

from tests.gpu.conftest import GPU, REP_RTOL, row_relative_error

pytestmark = GPU

CUDA = torch.device("cuda")


@pytest.mark.parametrize(
    ("size", "widths", "blocks"),
    [
        (24, (8, 16), (1, 1)),  # the ci preset
        (128, (8, 8, 16, 16), (2, 1, 1, 1)),  # strided stem, four stages
    ],
)
def test_encoder_under_autocast_on_cuda_matches_cpu(size, widths, blocks):
    from ergo_ray.models.encoder import build_encoder

    torch.manual_seed(0)
    enc = build_encoder(widths, blocks, 256, size).eval()
    x = torch.rand(16, 3, size, size, generator=torch.Generator().manual_seed(1))
    with torch.inference_mode():
        ref = enc(x)
        enc_cuda = enc.to(CUDA)
        full = enc_cuda(x.to(CUDA))
        with torch.autocast("cuda", dtype=torch.float16):
            half = enc_cuda(x.to(CUDA))
    assert full.dtype == torch.float32 and half.dtype == torch.float16  # autocast ran
    assert torch.isfinite(half).all()
    assert row_relative_error(full.cpu(), ref).max() < REP_RTOL
    assert row_relative_error(half.float().cpu(), ref).max() < REP_RTOL
    # float16 really changed the arithmetic (the comparison above is not of a float32 run)
    assert not torch.equal(half.float(), full)


def test_cinn_sampling_and_likelihood_on_cuda_match_cpu():
    from ergo_ray.models.cinn import latent_noise, object_seeds
    from tests.unit.models.test_cinn import ARCH, _trained

    model = _trained()
    seeds = object_seeds([f"tng100-1-{i:07d}-p0" for i in range(32)], seed=4)
    z = torch.from_numpy(latent_noise(seeds, 200, 3))
    cond = torch.randn(32, ARCH.cond_in, generator=torch.Generator().manual_seed(2))
    x = torch.randn(32, 3, generator=torch.Generator().manual_seed(3))
    with torch.no_grad():
        ref = model.sample(cond, z)
        ref_nll = model.nll(x, cond)
        gpu = model.to(CUDA)
        got = gpu.sample(cond.to(CUDA), z.to(CUDA))
        got_nll = gpu.nll(x.to(CUDA), cond.to(CUDA))
    assert got.device.type == "cuda" and got.shape == (32, 200, 3)
    # the trained network is far from the identity: the comparison is not trivial
    assert (ref - z).abs().max() > 0.1
    np.testing.assert_allclose(got.cpu().numpy(), ref.numpy(), rtol=1e-4, atol=1e-4)
    np.testing.assert_allclose(
        got_nll.cpu().numpy(), ref_nll.numpy(), rtol=1e-4, atol=1e-4
    )


def test_bundle_on_cuda_matches_the_cpu_bundle(trained_bundle, galaxies):
    from ergo_ray.infer.bundle import load_bundle
    from ergo_ray.models.cinn import object_seeds

    cpu = load_bundle(trained_bundle, device="cpu")
    gpu = load_bundle(trained_bundle, device="cuda")
    assert gpu.mixed_precision and next(gpu.encoder.parameters()).is_cuda
    imgs, obs = galaxies["images"], galaxies["observables"]
    seeds = object_seeds(galaxies["ids"], 9)

    reps_cpu, reps_gpu = cpu.represent(imgs), gpu.represent(imgs, batch_size=16)
    assert reps_gpu.dtype == np.float32 and np.isfinite(reps_gpu).all()
    assert row_relative_error(reps_gpu, reps_cpu).max() < REP_RTOL

    # the cINN on the same condition: float32 on both devices
    s_cpu = cpu.sample_posterior(reps_cpu, 100, seeds=seeds, observables=obs)
    s_gpu = gpu.sample_posterior(reps_cpu, 100, seeds=seeds, observables=obs)
    np.testing.assert_allclose(s_gpu, s_cpu, rtol=1e-4, atol=1e-4)
    base_args = (np.linspace(9.5, 11.5, 8), np.linspace(0.1, 0.4, 8), 50)
    np.testing.assert_allclose(
        gpu.baseline_sample(*base_args, seed=2),
        cpu.baseline_sample(*base_args, seed=2),
        rtol=1e-4,
        atol=1e-4,
    )

    # summaries of the same samples (float64 on both devices)
    sum_cpu, sum_gpu = cpu.summarize(s_cpu), gpu.summarize(s_cpu)
    for col, ref in sum_cpu.items():
        np.testing.assert_allclose(
            sum_gpu[col], ref, rtol=1e-9, atol=1e-9, equal_nan=True, err_msg=col
        )
    # the OOD score of the same representations
    np.testing.assert_allclose(
        gpu.ood_score(reps_cpu), cpu.ood_score(reps_cpu), rtol=1e-4
    )

    # end to end from the images (float16 encoder): within what the rounding moves
    e2e = gpu.summarize(gpu.sample_posterior(imgs, 100, seeds=seeds, observables=obs))
    for col, ref in sum_cpu.items():
        np.testing.assert_allclose(
            e2e[col], ref, rtol=1e-3, atol=1e-3, equal_nan=True, err_msg=col
        )
