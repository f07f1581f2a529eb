"""Real two-process gloo runs of the NNCLR loss and support set (torch.multiprocessing)."""

from __future__ import annotations

import os

import pytest
import torch
import torch.distributed as dist
import torch.multiprocessing as mp
from lightly.loss import NTXentLoss

from ergo_ray.models.nnclr import NNCLRCriterion

WORLD, N, DIM, BANK = 2, 6, 8, 64


def _inputs(world: int):
    g = torch.Generator().manual_seed(123)
    return [torch.randn(world * N, DIM, generator=g) for _ in range(4)]  # z0, p0, z1, p1


def _worker(rank: int, world: int, init_file: str, out_dir: str) -> None:
    os.environ["OMP_NUM_THREADS"] = "1"
    torch.set_num_threads(1)
    dist.init_process_group("gloo", init_method=f"file://{init_file}", rank=rank,
                            world_size=world)
    try:
        sl = slice(rank * N, (rank + 1) * N)
        z0, p0, z1, p1 = _inputs(world)
        out: dict[str, object] = {}
        # 1. our criterion's loss and gradients, negatives gathered across ranks
        crit = NNCLRCriterion(proj_dim=DIM, memory_bank_size=BANK, temperature=0.1,
                              support_set="global", seed=5)
        crit.synchronize()
        q0 = p0[sl].clone().requires_grad_(True)
        q1 = p1[sl].clone().requires_grad_(True)
        loss = crit(z0[sl], q0, z1[sl], q1, update=False)
        loss.backward()
        out["crit_bank"] = crit.bank.bank.clone()
        out["crit_loss"] = loss.detach()
        out["crit_grad_p0"] = q0.grad.detach()
        out["crit_grad_p1"] = q1.grad.detach()
        # 2. the NNCLR criterion with each support-set mode, three training steps
        for mode in ("global", "per_worker"):
            crit = NNCLRCriterion(proj_dim=DIM, memory_bank_size=BANK, temperature=0.1,
                                  support_set=mode, seed=5)
            crit.synchronize()
            out[f"{mode}_initial_bank"] = crit.bank.bank.clone()
            out[f"{mode}_first_loss"] = crit(z0[sl], p0[sl], z1[sl], p1[sl], update=True).detach()
            for step in range(2):
                g = torch.Generator().manual_seed(1000 * step + rank)
                zz = [torch.randn(N, DIM, generator=g) for _ in range(4)]
                crit(*zz, update=True)
                out[f"{mode}_z1_step{step}"] = zz[2]
            out[f"{mode}_bank"] = crit.bank.bank.clone()
            out[f"{mode}_ptr"] = int(crit.bank.bank_ptr)
        torch.save(out, os.path.join(out_dir, f"rank{rank}.pt"))
    finally:
        dist.destroy_process_group()


@pytest.fixture(scope="module")
def ranks(tmp_path_factory):
    tmp = tmp_path_factory.mktemp("dist")
    mp.start_processes(_worker, args=(WORLD, str(tmp / "pg"), str(tmp)), nprocs=WORLD,
                       join=True, start_method="spawn")
    return [torch.load(tmp / f"rank{r}.pt", weights_only=True) for r in range(WORLD)]


def _ntxent(a, b, temperature):
    """NT-Xent written out: each of the 2n vectors against its pair, all others negative."""
    x = torch.nn.functional.normalize(torch.cat([a, b]), dim=1)
    sim = (x @ x.T / temperature).masked_fill(torch.eye(len(x), dtype=torch.bool), -torch.inf)
    n = len(a)
    pair = torch.cat([torch.arange(n, 2 * n), torch.arange(0, n)])
    return torch.nn.functional.cross_entropy(sim, pair)


def _nearest(z, bank):
    """The support-set entry of highest cosine similarity to each row of ``z``."""
    sim = torch.nn.functional.normalize(z, dim=1) @ torch.nn.functional.normalize(bank, dim=1).T
    return bank[sim.argmax(dim=1)]


def test_nnclr_loss_and_gradients_on_two_workers_match_a_reference_on_the_whole_batch(ranks):
    z0, p0, z1, p1 = _inputs(WORLD)
    bank = ranks[0]["crit_bank"]
    assert torch.equal(bank, ranks[1]["crit_bank"])
    q0, q1 = p0.clone().requires_grad_(True), p1.clone().requires_grad_(True)
    ref = 0.5 * (_ntxent(_nearest(z0, bank), q1, 0.1) + _ntxent(_nearest(z1, bank), q0, 0.1))
    ref.backward()
    mean = sum(r["crit_loss"] for r in ranks) / WORLD
    assert abs(float(mean) - ref.item()) < 1e-5
    # each rank's gradient (all-reduced by the gather) is WORLD × the slice of the
    # single-process gradient of the mean loss, which DDP's averaging then divides back
    for rank, r in enumerate(ranks):
        sl = slice(rank * N, (rank + 1) * N)
        assert torch.allclose(r["crit_grad_p0"] / WORLD, q0.grad[sl], atol=1e-6)
        assert torch.allclose(r["crit_grad_p1"] / WORLD, q1.grad[sl], atol=1e-6)


def test_nnclr_criterion_two_workers_equals_single_process(ranks):
    z0, p0, z1, p1 = _inputs(WORLD)
    single = NNCLRCriterion(proj_dim=DIM, memory_bank_size=BANK, temperature=0.1, seed=5)
    # the distributed ranks gather negatives; the single process sees the whole batch
    single.loss = NTXentLoss(temperature=0.1)
    expected = single(z0, p0, z1, p1, update=True)
    mean = sum(r["global_first_loss"] for r in ranks) / WORLD
    assert abs(float(mean) - expected.item()) < 1e-5


def test_global_support_set_is_identical_on_all_ranks(ranks):
    r0, r1 = ranks
    assert torch.equal(r0["global_initial_bank"], r1["global_initial_bank"])
    assert torch.equal(r0["global_bank"], r1["global_bank"])
    assert r0["global_ptr"] == r1["global_ptr"] == 3 * WORLD * N
    # the bank holds the gathered projections of both ranks, in rank order
    step1 = torch.cat([r0["global_z1_step1"], r1["global_z1_step1"]])
    assert torch.allclose(r0["global_bank"][4 * N:6 * N], step1)


def test_per_worker_support_sets_differ_and_hold_own_projections(ranks):
    r0, r1 = ranks
    assert not torch.equal(r0["per_worker_initial_bank"], r1["per_worker_initial_bank"])
    assert not torch.allclose(r0["per_worker_bank"], r1["per_worker_bank"])
    for r in ranks:
        assert r["per_worker_ptr"] == 3 * N
        assert torch.allclose(r["per_worker_bank"][2 * N:3 * N], r["per_worker_z1_step1"])
