"""Masked forwards skip batch items whose decomposed inputs are all zero; losses do not change."""

import pytest
import torch

from spd_core.config import ModulePattern, config_from_dict
from spd_core.eval.metrics.ci_l0 import ci_l0
from spd_core.losses import LossContext, compute_losses, step_context
from spd_core.losses.importance_minimality import importance_minimality_loss
from spd_core.model.component_model import ComponentModel
from spd_core.model.inert_rows import representative_items
from spd_core.targets.resid_mlp import ResidualMLP

DETERMINISTIC_LOSSES = [
    {"classname": "CIMaskedReconLoss", "coeff": 1.0},
    {"classname": "CIMaskedReconLayerwiseLoss", "coeff": 0.5},
    {"classname": "UnmaskedReconLoss", "coeff": 0.3},
    {"classname": "ImportanceMinimalityLoss", "coeff": 0.01, "pnorm": 1.0},
    {"classname": "PGDReconLoss", "coeff": 1.0, "init": "zeroes", "step_size": 0.1, "n_steps": 2},
    {
        "classname": "PGDReconLayerwiseLoss",
        "coeff": 1.0,
        "init": "zeroes",
        "step_size": 0.2,
        "n_steps": 1,
        "mask_scope": "shared_across_batch",
    },
]


def _config(pattern: str, C: int):
    return config_from_dict(
        {
            "module_info": [{"module_pattern": pattern, "C": C}],
            "loss_metric_configs": DETERMINISTIC_LOSSES,
            "batch_size": 8,
            "steps": 10,
            "autocast_bf16": False,
        }
    )


def _sparse_batch(n: int, d: int, zero_rows: list[int]) -> torch.Tensor:
    x = torch.randn(n, d)
    x[zero_rows] = 0.0
    return x


def test_representative_items_are_the_active_ones_then_one_inert(two_layer):
    only_fc1 = ComponentModel(two_layer, [ModulePattern(module_pattern="fc1", C=3)])
    x = _sparse_batch(6, 3, [1, 3, 4])
    rows, weights = representative_items(only_fc1.prepare(x).clean)
    assert rows.tolist() == [0, 2, 5, 1]
    assert weights.tolist() == [1.0, 1.0, 1.0, 3.0]
    # fc2's input is ReLU(b1) ≠ 0 on zero rows, so with fc2 decomposed every item is active
    both = ComponentModel(two_layer, [ModulePattern(module_pattern="fc*", C=3)])
    assert representative_items(both.prepare(x).clean) is None
    emb = ComponentModel(
        torch.nn.Sequential(torch.nn.Embedding(6, 4)),
        [ModulePattern(module_pattern="0", C=2)],
        "mlp",
    )
    assert representative_items(emb.prepare(torch.tensor([[0, 1], [0, 0]])).clean) is None


def test_item_weights_in_importance_minimality_and_l0_by_hand():
    upper = {"a": torch.tensor([[0.5, 0.0], [0.2, 0.3]])}
    weights = torch.tensor([1.0, 3.0])  # row 1 stands for three items
    # p = 1: s = [0.5 + 3·0.2, 0 + 3·0.3] = [1.1, 0.9] over 4 items → μ = [0.275, 0.225]
    loss = importance_minimality_loss(upper, 1.0, eps=0.0, item_weights=weights)
    assert loss.item() == pytest.approx(0.5)
    # L0 at 0.25: row 0 has 1 component above, row 1 has 1 → (1 + 3·1) / 4 = 1; at 0.4: 1/4
    assert ci_l0(upper, 0.25, weights)["a"] == pytest.approx(1.0)
    assert ci_l0(upper, 0.4, weights)["a"] == pytest.approx(0.25)


def _losses_and_grads(model, ctx):
    total, terms = compute_losses(ctx)
    params = model.component_parameters() + model.ci_parameters()
    grads = torch.autograd.grad(total, params, allow_unused=True)
    return total, terms, grads


@pytest.mark.parametrize("case", ["two_layer_fc1", "resid_mlp"])
def test_skipping_inert_rows_keeps_every_loss_and_gradient(case, two_layer):
    torch.manual_seed(0)
    if case == "two_layer_fc1":
        zero_rows = [0, 2, 3, 7, 8, 11]
        target, pattern, x = two_layer, "fc1", _sparse_batch(12, 3, zero_rows)
    else:
        zero_rows = [1, 4, 5, 9]
        target = ResidualMLP(n_features=6, d_embed=8, d_mlp=3, n_layers=2)
        pattern, x = "layers.*.mlp_*", _sparse_batch(12, 6, zero_rows)
    n_zero_rows = len(zero_rows)
    config = _config(pattern, 4)
    model = ComponentModel(target, config.module_info, "mlp", [3])
    acts = model.prepare(x)
    full = LossContext(model, acts, model.causal_importances(acts), config, 0.3, None)
    skipping = step_context(model, x, config, 0.3, None)
    n_rows = skipping.acts.clean.x.shape[0]
    assert n_rows == x.shape[0] - n_zero_rows + 1
    assert skipping.row_fraction == pytest.approx(n_rows / x.shape[0])
    total_full, terms_full, grads_full = _losses_and_grads(model, full)
    total_skip, terms_skip, grads_skip = _losses_and_grads(model, skipping)
    assert all(terms_full[k].item() > 0 for k in terms_full)
    torch.testing.assert_close(total_skip, total_full, atol=1e-7, rtol=1e-5)
    for k in terms_full:
        torch.testing.assert_close(terms_skip[k], terms_full[k], atol=1e-7, rtol=1e-5)
    for a, b in zip(grads_skip, grads_full, strict=True):
        assert (a is None) == (b is None)
        if a is not None:
            torch.testing.assert_close(a, b, atol=1e-7, rtol=1e-5)
