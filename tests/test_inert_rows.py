"""Masked forwards skip batch items whose decomposed inputs are all zero; losses do not change."""

import pytest
import torch

from spd_core.component_model import ComponentModel
from spd_core.config import ModulePattern, config_from_dict
from spd_core.inert_rows import active_rows
from spd_core.losses import LossContext, compute_losses, skipping_inert_rows
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


def test_active_rows_are_items_with_a_nonzero_decomposed_input(two_layer):
    only_fc1 = ComponentModel(two_layer, [ModulePattern(module_pattern="fc1", C=3)])
    x = _sparse_batch(5, 3, [1, 3])
    assert active_rows(only_fc1.prepare(x).clean).tolist() == [0, 2, 4]
    # fc2's input is ReLU(b1) ≠ 0 on zero rows, so with fc2 decomposed every item is active
    both = ComponentModel(two_layer, [ModulePattern(module_pattern="fc*", C=3)])
    assert active_rows(both.prepare(x).clean) is None
    emb = ComponentModel(
        torch.nn.Sequential(torch.nn.Embedding(6, 4)),
        [ModulePattern(module_pattern="0", C=2)],
        "mlp",
    )
    assert active_rows(emb.prepare(torch.tensor([[0, 1], [0, 0]])).clean) is None


def _losses_and_grads(model, ctx):
    total, terms = compute_losses(ctx)
    params = model.component_parameters() + model.ci_parameters()
    grads = torch.autograd.grad(total, params, allow_unused=True)
    return total, terms, grads


@pytest.mark.parametrize("case", ["two_layer_fc1", "resid_mlp"])
def test_skipping_inert_rows_keeps_every_loss_and_gradient(case, two_layer):
    torch.manual_seed(0)
    if case == "two_layer_fc1":
        target, pattern, x = two_layer, "fc1", _sparse_batch(12, 3, [0, 2, 3, 7, 8, 11])
    else:
        target, pattern = ResidualMLP(n_features=6, d_embed=8, d_mlp=3, n_layers=2), "layers.*"
        pattern, x = "layers.*.mlp_*", _sparse_batch(12, 6, [1, 4, 5, 9])
    config = _config(pattern, 4)
    model = ComponentModel(target, config.module_info, "mlp", [3])
    acts = model.prepare(x)
    full = LossContext(model, acts, model.causal_importances(acts), config, 0.3, None)
    acts = model.prepare(x)
    skipping = skipping_inert_rows(model, acts, model.causal_importances(acts), config, 0.3, None)
    assert skipping.acts.clean.x.shape[0] < x.shape[0]
    assert skipping.row_fraction == pytest.approx(skipping.acts.clean.x.shape[0] / x.shape[0])
    total_full, terms_full, grads_full = _losses_and_grads(model, full)
    total_skip, terms_skip, grads_skip = _losses_and_grads(model, skipping)
    assert all(terms_full[k].item() > 0 for k in terms_full)
    for k in terms_full:
        torch.testing.assert_close(terms_skip[k], terms_full[k], atol=1e-7, rtol=1e-5)
    for a, b in zip(grads_skip, grads_full, strict=True):
        assert (a is None) == (b is None)
        if a is not None:
            torch.testing.assert_close(a, b, atol=1e-7, rtol=1e-5)
