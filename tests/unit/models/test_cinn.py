"""The conditional INN: invertibility, log-det, initialisation, seeded noise, training."""

from __future__ import annotations

import numpy as np
import pytest
import torch

from ergo_ray.errors import CheckpointError
from ergo_ray.models.cinn import (
    NEGLIGIBLE_WEIGHT,
    CinnArch,
    ConditionalINN,
    drop_negligible_weights,
    index_seeds,
    latent_noise,
    object_seeds,
)
from ergo_ray.train.cinn_fit import fit_cinn

ARCH = CinnArch(
    cond_in=8,
    n_blocks=4,
    subnet_width=32,
    subnet_depth=2,
    cond_dim=16,
    cond_layers=1,
    clamp=1.0,
    init_seed=3,
)


def _trained(arch: CinnArch = ARCH, steps: int = 60) -> ConditionalINN:
    """A network moved well away from its near-identity initialisation."""
    g = torch.Generator().manual_seed(0)
    model = ConditionalINN(arch)
    opt = torch.optim.Adam(list(model.trainable_parameters()), lr=2e-2)
    c = torch.randn(256, arch.cond_in, generator=g)
    x = torch.stack(
        [
            c[:, 0] * 2 + 0.1 * torch.randn(256, generator=g),
            torch.sin(c[:, 1]),
            c[:, 2] ** 2,
        ],
        1,
    )
    for _ in range(steps):
        loss = model.nll(x, c).mean()
        opt.zero_grad()
        loss.backward()
        opt.step()
    return model.eval()


def test_round_trip_exact_and_logdet_antisymmetric():
    model = _trained()
    g = torch.Generator().manual_seed(1)
    x = torch.randn(500, 3, generator=g) * 2
    c = torch.randn(500, ARCH.cond_in, generator=g)
    with torch.no_grad():
        z, logj = model(x, c)
        x_back = model.reverse(z, c)
        _, logj_rev = model.inn(z, c=[model.condition(c)], rev=True, jac=True)
    assert (x - x_back).abs().max().item() < 1e-4
    assert torch.allclose(logj, -logj_rev, atol=1e-4)
    assert logj.abs().max().item() > 1e-3  # the transform is not the identity any more


def test_sample_is_reverse_of_noise():
    model = _trained()
    c = torch.randn(4, ARCH.cond_in)
    z = torch.from_numpy(latent_noise(np.arange(4), 50, 3))
    with torch.no_grad():
        s = model.sample(c, z)
        direct = model.reverse(z[1], c[1:2].expand(50, -1))
    assert s.shape == (4, 50, 3)
    assert torch.allclose(s[1], direct, atol=1e-5)


def test_initialisation_scale_and_structure():
    model = ConditionalINN(
        CinnArch(
            cond_in=256,
            n_blocks=12,
            subnet_width=128,
            subnet_depth=3,
            cond_dim=128,
            cond_layers=3,
        )
    )
    w = torch.cat([p.detach().ravel() for p in model.trainable_parameters()])
    assert abs(w.std().item() - 0.01) < 5e-4
    assert abs(w.mean().item()) < 5e-4
    couplings = [
        m for m in model.inn.module_list if type(m).__name__ == "GLOWCouplingBlock"
    ]
    perms = [m for m in model.inn.module_list if type(m).__name__ == "PermuteRandom"]
    assert len(couplings) == 12 and len(perms) == 12
    # Subnet: (Linear -> ReLU) x 3 -> Linear; condition net: 256 -> 128 ... -> 128.
    sub = couplings[0].subnet1
    assert [type(m).__name__ for m in sub] == ["Linear", "ReLU"] * 3 + ["Linear"]
    assert (
        model.cond_net[0].in_features == 256 and model.cond_net[-1].out_features == 128
    )
    assert sum(isinstance(m, torch.nn.Linear) for m in model.cond_net) == 5


def test_construction_leaves_numpy_global_state_alone():
    np.random.seed(123)  # noqa: NPY002 - the legacy global state is what FrEIA touches
    expected = np.random.random(3)  # noqa: NPY002
    np.random.seed(123)  # noqa: NPY002
    ConditionalINN(ARCH)
    assert np.array_equal(np.random.random(3), expected)  # noqa: NPY002


def test_payload_round_trip_gives_same_outputs():
    model = _trained()
    clone = ConditionalINN.from_payload(model.payload())
    x, c = torch.randn(10, 3), torch.randn(10, ARCH.cond_in)
    with torch.no_grad():
        assert torch.equal(model(x, c)[0], clone(x, c)[0])
    bad = model.payload()
    bad["arch"] = {**bad["arch"], "subnet_width": 64}
    with pytest.raises(CheckpointError, match="do not match"):
        ConditionalINN.from_payload(bad)


def test_decayed_weights_are_dropped_on_load_without_changing_samples():
    # Weight decay leaves dead units' weights subnormal; the CPU multiplies by them on a
    # slow path. Loading drops every weight below NEGLIGIBLE_WEIGHT; the samples stay equal.
    decayed = _trained()
    g = torch.Generator().manual_seed(5)
    n_tiny = 0
    with torch.no_grad():
        for p in decayed.trainable_parameters():
            pick = torch.rand(p.shape, generator=g) < 0.2
            tiny = torch.where(torch.rand(p.shape, generator=g) < 0.5, 1e-39, -1e-25)
            p[pick] = tiny[pick]
            n_tiny += int(pick.sum())
    assert n_tiny > 100
    loaded = ConditionalINN.from_payload(decayed.payload())
    weights = torch.cat([p.flatten() for p in loaded.trainable_parameters()])
    assert int(((weights.abs() < NEGLIGIBLE_WEIGHT) & (weights != 0)).sum()) == 0
    c, z = torch.randn(6, ARCH.cond_in), torch.randn(6, 50, 3)
    with torch.no_grad():
        np.testing.assert_allclose(loaded.sample(c, z).numpy(), decayed.sample(c, z).numpy(),
                                   rtol=0, atol=1e-6)
    assert drop_negligible_weights(decayed) == n_tiny
    assert drop_negligible_weights(decayed) == 0


def test_latent_noise_reproducible_and_batch_independent():
    seeds = object_seeds([f"tng100-1-{i:07d}-p0" for i in range(6)], seed=7)
    a = latent_noise(seeds, 400, 3)
    b = latent_noise(seeds[3:5], 400, 3)
    assert a.shape == (6, 400, 3) and a.dtype == np.float32
    assert np.array_equal(a, latent_noise(seeds, 400, 3))
    assert np.array_equal(a[3:5], b)
    assert not np.array_equal(a[0], a[1])
    big = latent_noise(index_seeds(0, 500), 400, 3).reshape(-1, 3)
    assert abs(big.mean()) < 0.01 and abs(big.std() - 1) < 0.01
    assert np.abs(np.corrcoef(big, rowvar=False) - np.eye(3)).max() < 0.01
    # Odd total length (one Box-Muller pair split across the end).
    assert latent_noise(np.array([5]), 3, 1).shape == (1, 3, 1)


def test_object_and_index_seeds():
    ids = ["a", "b", "a"]
    s = object_seeds(ids, 1)
    assert s.dtype == np.int64 and s[0] == s[2] and s[0] != s[1]
    assert not np.array_equal(object_seeds(ids, 1), object_seeds(ids, 2))
    assert np.array_equal(index_seeds(3, 5)[2:], index_seeds(3, 3, start=2))
    assert len(set(index_seeds(0, 1000).tolist())) == 1000


def _toy(n: int, seed: int) -> tuple[torch.Tensor, torch.Tensor]:
    g = torch.Generator().manual_seed(seed)
    c = torch.randn(n, 4, generator=g)
    x = torch.stack(
        [
            c[:, 0] + 0.2 * torch.randn(n, generator=g),
            -c[:, 1] + 0.2 * torch.randn(n, generator=g),
            0.5 * torch.randn(n, generator=g),
        ],
        1,
    )
    return x, c


CONFIG = {
    "arch": CinnArch(
        cond_in=4,
        n_blocks=4,
        subnet_width=32,
        subnet_depth=2,
        cond_dim=16,
        cond_layers=0,
    ).to_dict(),
    "lr": 1e-2,
    "weight_decay": 0.0,
    "batch_size": 32,
    "epochs": 20,
    "patience": 50,
    "lr_factor": 0.5,
    "lr_patience": 5,
    "grad_clip": 1.0,
    "label_noise": 0.0,
    "seed": 0,
}


def test_fit_cinn_learns_conditional_gaussian():
    train, val = _toy(1024, 0), _toy(256, 1)
    model, state = fit_cinn(train, val, CONFIG)
    hist = state["history"]
    assert hist[-1]["val_nll"] < hist[0]["val_nll"] - 0.5
    assert state["best_val"] == min(h["val_nll"] for h in hist)
    c = torch.tensor([[1.5, -1.0, 0.0, 0.0]])
    z = torch.from_numpy(latent_noise(np.array([0]), 2000, 3))
    with torch.no_grad():
        s = model.sample(c, z)[0]
    # Posterior of target 0 ~ N(1.5, 0.2), target 1 ~ N(1.0, 0.2), target 2 ~ N(0, 0.5).
    assert abs(s[:, 0].mean().item() - 1.5) < 0.25
    assert abs(s[:, 1].mean().item() - 1.0) < 0.25
    assert s[:, 0].std().item() < 0.4 and s[:, 1].std().item() < 0.4
    assert 0.3 < s[:, 2].std().item() < 0.7


def test_fit_cinn_resume_matches_uninterrupted_run():
    train, val = _toy(256, 2), _toy(64, 3)
    cfg = {**CONFIG, "epochs": 4, "batch_size": 64}
    states: list[dict] = []
    full, _ = fit_cinn(train, val, cfg, on_epoch=lambda m, s: states.append(s))
    resumed, st = fit_cinn(train, val, cfg, state=states[1])
    assert st["epoch"] == 3 and len(st["history"]) == 4
    for a, b in zip(
        full.state_dict().values(), resumed.state_dict().values(), strict=True
    ):
        assert torch.equal(a, b)
    other = {**cfg, "arch": {**cfg["arch"], "n_blocks": 2}}
    with pytest.raises(CheckpointError, match="different arch"):
        fit_cinn(train, val, other, state=states[1])
    with pytest.raises(CheckpointError, match="different lr"):
        fit_cinn(train, val, {**cfg, "lr": 1.0}, state=states[1])
    _, st2 = fit_cinn(train, val, {**cfg, "epochs": 5}, state=states[3])
    assert st2["epoch"] == 4


def test_fit_cinn_early_stopping():
    train, val = _toy(128, 4), _toy(64, 5)
    cfg = {**CONFIG, "epochs": 50, "patience": 1, "lr": 1e-6, "batch_size": 64}
    _, state = fit_cinn(train, val, cfg)
    assert state["stopped"] and state["epoch"] < 49


def test_label_noise_is_seeded_changes_training_and_is_a_resume_setting():
    train, val = _toy(128, 7), _toy(64, 8)
    cfg = {**CONFIG, "epochs": 2, "batch_size": 64, "label_noise": 0.05}
    states: list[dict] = []
    a, _ = fit_cinn(train, val, cfg, on_epoch=lambda m, s: states.append(s))
    b, _ = fit_cinn(train, val, cfg)
    c, _ = fit_cinn(train, val, {**cfg, "label_noise": 0.0})
    pairs = list(zip(a.state_dict().values(), b.state_dict().values(), strict=True))
    assert all(torch.equal(x, y) for x, y in pairs)
    assert any(not torch.equal(x, y)
               for x, y in zip(a.state_dict().values(), c.state_dict().values(), strict=True))
    with pytest.raises(CheckpointError, match="different label_noise"):
        fit_cinn(train, val, {**cfg, "label_noise": 0.1}, state=states[0])


def test_condition_scaling_is_inside_the_network():
    model = _trained()
    rng = np.random.default_rng(0)
    mean, scale = rng.normal(size=ARCH.cond_in), rng.uniform(0.1, 3, ARCH.cond_in)
    scaled = ConditionalINN.from_payload(model.payload())
    scaled.set_condition_scaling(mean, scale)
    x, c = torch.randn(6, 3), torch.randn(6, ARCH.cond_in)
    raw = c * torch.tensor(scale, dtype=torch.float32) + torch.tensor(
        mean, dtype=torch.float32
    )
    with torch.no_grad():
        assert torch.allclose(scaled(x, raw)[0], model(x, c)[0], atol=1e-5)
    # The scaling travels with the weights.
    again = ConditionalINN.from_payload(scaled.payload())
    with torch.no_grad():
        assert torch.equal(again(x, raw)[0], scaled(x, raw)[0])
    with pytest.raises(ValueError, match="values"):
        scaled.set_condition_scaling([0.0], [1.0])
    cfg = {**CONFIG, "epochs": 1, "cond_scaling": [[1.0] * 4, [2.0] * 4]}
    fitted, _ = fit_cinn(_toy(64, 6), None, cfg)
    assert (
        fitted.cond_mean.tolist() == [1.0] * 4
        and fitted.cond_scale.tolist() == [2.0] * 4
    )
