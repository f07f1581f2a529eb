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
        # 1. NT-Xent with negatives gathered across ranks
        a = z0[sl].clone().requires_grad_(True)
        b = z1[sl].clone().requires_grad_(True)
        loss = NTXentLoss(temperature=0.1, gather_distributed=True)(a, b)
        loss.backward()
        out["ntxent"] = loss.detach()
        out["ntxent_grad"] = a.grad.detach()
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


def test_ntxent_two_workers_equals_single_process_on_concatenated_batch(ranks):
    z0, _, z1, _ = _inputs(WORLD)
    a, b = z0.clone().requires_grad_(True), z1.clone().requires_grad_(True)
    single = NTXentLoss(temperature=0.1)(a, b)
    single.backward()
    mean = sum(r["ntxent"] for r in ranks) / WORLD
    assert abs(float(mean) - single.item()) < 1e-5
    # each rank's gradient (all-reduced by lightly's GatherLayer) is WORLD × the slice of the
    # single-process gradient of the mean loss, which DDP's averaging then divides back
    for rank, r in enumerate(ranks):
        assert torch.allclose(r["ntxent_grad"] / WORLD, a.grad[rank * N:(rank + 1) * N], atol=1e-6)


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
