from __future__ import annotations

import pytest
import torch
from lightly.loss import NTXentLoss

from ergo_ray.models.encoder import build_encoder
from ergo_ray.models.nnclr import NNCLR, NNCLRCriterion


def _criterion(**kw):
    opts = {"proj_dim": 8, "memory_bank_size": 32, "temperature": 0.1, "seed": 1} | kw
    return NNCLRCriterion(**opts)


def test_model_outputs_representation_projection_prediction():
    torch.manual_seed(0)
    model = NNCLR(build_encoder((8, 16), (1, 1), 32, 24), rep_dim=32, proj_dim=8, pred_hidden=16)
    rep, z, p = model(torch.rand(4, 3, 24, 24))
    assert rep.shape == (4, 32) and z.shape == (4, 8) and p.shape == (4, 8)


def test_loss_uses_nearest_neighbours_from_the_support_set():
    torch.manual_seed(0)
    crit = _criterion()
    z0, p0, z1, p1 = (torch.randn(6, 8) for _ in range(4))
    bank = crit.bank.bank.clone()
    loss = crit(z0, p0, z1, p1, update=False)
    # reference: nearest neighbour (cosine) of each projection in the bank, NT-Xent with
    # in-batch negatives, symmetrised
    bn = torch.nn.functional.normalize(bank, dim=1)

    def nn_of(z):
        return bank[(torch.nn.functional.normalize(z, dim=1) @ bn.T).argmax(1)]

    ref = NTXentLoss(temperature=0.1)
    expected = 0.5 * (ref(nn_of(z0), p1) + ref(nn_of(z1), p0))
    assert torch.allclose(loss, expected, atol=1e-6)
    assert torch.equal(crit.bank.bank, bank)  # update=False leaves the bank alone


def test_update_enqueues_second_view_projections():
    crit = _criterion()
    z1 = torch.randn(5, 8)
    crit(torch.randn(5, 8), torch.randn(5, 8), z1, torch.randn(5, 8), update=True)
    assert torch.allclose(crit.bank.bank[:5], z1)
    assert int(crit.bank.bank_ptr) == 5


def test_bank_is_not_in_state_dict_but_round_trips_explicitly():
    crit = _criterion()
    crit(torch.randn(5, 8), torch.randn(5, 8), torch.randn(5, 8), torch.randn(5, 8))
    assert not any("bank" in k for k in crit.state_dict())
    saved = crit.bank_state()
    other = _criterion(seed=99)
    assert not torch.equal(other.bank.bank, saved["bank"])
    other.load_bank_state(saved)
    assert torch.equal(other.bank.bank, saved["bank"])
    assert int(other.bank.bank_ptr) == 5
    with pytest.raises(ValueError, match="shape"):
        _criterion(memory_bank_size=16).load_bank_state(saved)


def test_support_set_modes():
    assert _criterion(support_set="global").bank.gather_distributed is True
    assert _criterion(support_set="per_worker").bank.gather_distributed is False
    with pytest.raises(ValueError, match="support_set"):
        _criterion(support_set="shared")


def test_gradients_reach_predictions_not_neighbours():
    crit = _criterion()
    z0, z1 = torch.randn(4, 8, requires_grad=True), torch.randn(4, 8, requires_grad=True)
    p0, p1 = torch.randn(4, 8, requires_grad=True), torch.randn(4, 8, requires_grad=True)
    crit(z0, p0, z1, p1).backward()
    assert p0.grad is not None and p0.grad.abs().sum() > 0
    assert z0.grad is None and z1.grad is None
