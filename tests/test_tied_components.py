"""Tied components (TMS, W₂ = W₁ᵀ): shared storage, the reference's two Adam updates, errors."""

from unittest.mock import patch

import pytest
import torch
from torch import nn

from spd_core.config import ModulePattern
from spd_core.model.component_model import ComponentModel
from spd_core.model.tied_components import TiedComponentsError, ties_hold
from spd_core.presets import resolve_config
from spd_core.store import FactorStore
from spd_core.task.toy import toy_task
from spd_core.train.single_process import decompose
from spd_core.train.step import faithfulness_warmup, make_optimizer


class TiedPair(nn.Module):
    """y = W₁ᵀ ReLU(W₁ x): linear2's weight is linear1's transposed."""

    def __init__(self, tied: bool = True):
        super().__init__()
        gen = torch.Generator().manual_seed(0)
        self.linear1 = nn.Linear(5, 3, bias=False)
        self.linear2 = nn.Linear(3, 5)
        self.other = nn.Linear(3, 5)
        with torch.no_grad():
            self.linear1.weight.copy_(torch.randn(3, 5, generator=gen))
            w2 = self.linear1.weight.T if tied else torch.randn(5, 3, generator=gen)
            self.linear2.weight.copy_(w2)

    def forward(self, x):
        return self.linear2(torch.relu(self.linear1(x)))


def _model(ties, C=(4, 4), target=None) -> ComponentModel:
    info = [
        ModulePattern(module_pattern="linear1", C=C[0]),
        ModulePattern(module_pattern="linear2", C=C[1]),
    ]
    return ComponentModel(target or TiedPair(), info, "mlp", [3], tied_components=ties)


def test_tgt_factors_are_views_of_src_factors_and_stay_so_after_moves():
    model = _model([("linear1", "linear2")])
    a, b = model.components_of("linear1"), model.components_of("linear2")
    assert b.U.data_ptr() == a.V.data_ptr() and b.V.data_ptr() == a.U.data_ptr()
    torch.testing.assert_close(b.component_weight(), a.component_weight().T, rtol=0, atol=0)
    model.to(torch.float64).to(torch.float32)
    assert ties_hold(
        {n: model.components_of(n) for n in model.module_names}, [("linear1", "linear2")]
    )
    # four Parameters over two storages: each gets its own Adam state, as in the reference
    assert len(model.component_parameters()) == 4


def test_the_optimizer_refuses_a_broken_tie():
    model = _model([("linear1", "linear2")])
    model.components_of("linear2").U.data = model.components_of("linear2").U.data.clone()
    with pytest.raises(RuntimeError, match="no longer share storage"):
        make_optimizer(model, lr=0.01)


def test_one_adam_step_applies_both_updates_to_the_shared_storage():
    # Adam's first step moves each parameter by lr · g / (|g| + eps) ≈ lr · sign(g). Tied, the
    # shared storage of linear1.V and linear2.U moves by lr · (sign(g₁) + sign(g₂)).
    model = _model([("linear1", "linear2")])
    a, b = model.components_of("linear1"), model.components_of("linear2")
    before = a.V.detach().clone()
    x = torch.randn(16, 5, generator=torch.Generator().manual_seed(1))
    h = torch.relu(a(x, mask=torch.rand(4)))
    loss = (b(h, mask=torch.rand(4)) ** 2).sum()
    opt = make_optimizer(model, lr=0.01)
    loss.backward()
    g_src, g_tgt = a.V.grad.clone(), b.U.grad.clone()
    assert not torch.equal(g_src, g_tgt)
    opt.step()
    expected = before - 0.01 * (torch.sign(g_src) + torch.sign(g_tgt))
    torch.testing.assert_close(a.V.detach(), expected, rtol=0, atol=1e-6)
    assert torch.equal(b.U.detach(), a.V.detach())


@pytest.mark.parametrize(
    ("ties", "kwargs", "message"),
    [
        (
            [("linear1", "head")],
            {},
            r"'head' is not a decomposed module \(decomposed: linear1, linear2\)",
        ),
        ([("linear1", "linear1")], {}, "cannot be tied to itself"),
        ([("linear1", "linear2"), ("linear2", "linear1")], {}, "already in another pair"),
        ([("linear1", "linear2")], {"C": (4, 6)}, r"C differs \(4 and 6\)"),
        (
            [("linear1", "linear2")],
            {"target": TiedPair(tied=False)},
            r"linear2 weight \(5, 3\) is not its linear1 weight \(3, 5\) transposed",
        ),
    ],
)
def test_pairs_that_cannot_be_tied_are_named(ties, kwargs, message):
    with pytest.raises(TiedComponentsError, match=message):
        _model(ties, **kwargs)


def test_a_decomposition_stores_tgt_factors_equal_to_src_factors(tmp_path):
    config = resolve_config("tms-5-2").model_copy(update={"steps": 15, "train_log_freq": 5})
    assert config.tied_components == [("linear1", "linear2")]
    task = toy_task(config, torch.device("cpu"), tmp_path / "cache")
    decompose(config, task, out=tmp_path / "tied.zarr")
    store = FactorStore.open(tmp_path / "tied.zarr")
    assert (store.U("linear2") == store.V("linear1")).all()
    assert (store.V("linear2") == store.U("linear1")).all()


def test_no_optimizer_param_group_holds_two_views_of_one_storage():
    # A foreach/fused Adam (the GPU default) updates a group in one kernel: aliased entries in
    # one group would race there, so each tie's target factors get a group of their own.
    model = _model([("linear1", "linear2")])
    config = resolve_config("tms-5-2").model_copy(update={"faithfulness_warmup_steps": 1})
    warmup_groups = []
    real_step = torch.optim.AdamW.step

    def recording_step(self, *args, **kwargs):
        warmup_groups.append([g["params"] for g in self.param_groups])
        return real_step(self, *args, **kwargs)

    with patch.object(torch.optim.AdamW, "step", recording_step):
        faithfulness_warmup(model, config)
    for groups in (
        warmup_groups[0],
        [g["params"] for g in make_optimizer(model, 0.01).param_groups],
    ):
        assert sum(len(g) for g in groups) >= 4  # linear1 and linear2's U and V, at least
        for group in groups:
            pointers = [p.data_ptr() for p in group]
            assert len(pointers) == len(set(pointers))
