"""Loss terms pinned on hand-computed values and the spec's identities."""

import math

import pytest
import torch

from spd_core.config import ModulePattern, config_from_dict
from spd_core.losses import LossContext, compute_losses, faithfulness_loss
from spd_core.losses.divergence import (
    divergence_sum,
    per_example_divergence,
    per_position_divergence,
)
from spd_core.losses.importance_minimality import current_p, importance_minimality_loss
from spd_core.losses.reconstruction import stochastic_recon
from spd_core.model.component_model import ComponentModel
from spd_core.model.masks import ModuleMask


def test_faithfulness_is_mean_squared_weight_error():
    deltas = {"a": torch.tensor([[1.0, 2.0], [0.0, 1.0]]), "b": torch.tensor([[3.0, 0.0, 0.0]])}
    # Σ squares = 1 + 4 + 0 + 1 + 9 = 15 over 7 entries
    assert faithfulness_loss(deltas).item() == pytest.approx(15 / 7)


def test_importance_minimality_p1_sums_layers_and_components():
    ci = {"a": torch.tensor([[1.0, 2.0, 3.0]]), "b": torch.tensor([[0.5, 1.5]])}
    assert importance_minimality_loss(ci, p=1.0).item() == pytest.approx(8.0)


def test_importance_minimality_p2_averages_over_positions():
    assert importance_minimality_loss(
        {"a": torch.tensor([[2.0, 3.0]])}, p=2.0
    ).item() == pytest.approx(13.0)
    two_positions = {"a": torch.tensor([[2.0, 0.0], [0.0, 4.0]])}
    # (4 + 0)/2 + (0 + 16)/2 = 10
    assert importance_minimality_loss(two_positions, p=2.0).item() == pytest.approx(10.0)


def test_importance_minimality_beta_term_by_hand():
    ci = {"a": torch.tensor([[1.0, 2.0]])}
    expected = (1 + 1 * math.log2(2)) + (2 + 2 * math.log2(3))
    assert importance_minimality_loss(ci, p=1.0, beta=1.0).item() == pytest.approx(
        expected, rel=1e-6
    )
    # world_size scales the local sum inside the log
    expected_ws2 = (1 + math.log2(3)) + (2 + 2 * math.log2(5))
    got = importance_minimality_loss(ci, p=1.0, beta=1.0, world_size=2).item()
    assert got == pytest.approx(expected_ws2, rel=1e-6)


def test_p_annealing_midway():
    cfg = config_from_dict(
        _cfg_dict(
            losses=[
                {
                    "classname": "ImportanceMinimalityLoss",
                    "coeff": 1.0,
                    "pnorm": 2.0,
                    "p_anneal_start_frac": 0.0,
                    "p_anneal_final_p": 1.0,
                    "p_anneal_end_frac": 0.5,
                }
            ]
        )
    ).loss_metric_configs[0]
    p = current_p(cfg, 0.25)
    assert p == pytest.approx(1.5)
    assert current_p(cfg, 0.9) == 1.0
    assert importance_minimality_loss({"a": torch.tensor([[2.0]])}, p).item() == pytest.approx(
        2**1.5
    )


def test_mse_divides_by_every_element():
    pred, target = torch.tensor([[1.0, 2.0], [3.0, 4.0]]), torch.tensor([[0.0, 2.0], [3.0, 2.0]])
    s, n = divergence_sum(pred, target, "mse")
    assert (s.item(), n) == (5.0, 4)


def test_kl_sums_vocab_and_averages_positions():
    target = torch.log(torch.tensor([[[0.5, 0.5]], [[0.9, 0.1]]]))  # (batch 2, seq 1, vocab 2)
    pred = torch.log(torch.tensor([[[0.25, 0.75]], [[0.9, 0.1]]]))
    s, n = divergence_sum(pred, target, "kl")
    kl0 = 0.5 * math.log(0.5 / 0.25) + 0.5 * math.log(0.5 / 0.75)
    assert n == 2
    assert s.item() == pytest.approx(kl0, rel=1e-5)


def test_divergence_at_each_position_by_hand_and_its_mean_is_the_examples():
    target = torch.log(torch.tensor([[[0.5, 0.5], [0.9, 0.1]]]))  # (1, 2 positions, vocab 2)
    pred = torch.log(torch.tensor([[[0.5, 0.5], [0.5, 0.5]]]))
    kl = per_position_divergence(pred, target, "kl")
    hand = 0.9 * math.log(0.9 / 0.5) + 0.1 * math.log(0.1 / 0.5)
    assert kl.shape == (1, 2)
    assert kl[0].tolist() == pytest.approx([0.0, hand], abs=1e-6)
    hidden_t = torch.tensor([[[1.0, 2.0], [3.0, 4.0], [0.0, 0.0]]])  # (1, 3 positions, 2)
    hidden_p = torch.tensor([[[1.0, 0.0], [3.0, 4.0], [1.0, 1.0]]])
    mse = per_position_divergence(hidden_p, hidden_t, "mse")
    assert mse[0].tolist() == pytest.approx([2.0, 0.0, 1.0])
    for p, t, loss in ((pred, target, "kl"), (hidden_p, hidden_t, "mse")):
        mean = per_position_divergence(p, t, loss).mean(-1)
        assert mean.tolist() == pytest.approx(per_example_divergence(p, t, loss).tolist())


def _cfg_dict(losses, **extra):
    base = {
        "module_info": [{"module_pattern": "fc1", "C": 5}],
        "loss_metric_configs": losses,
        "batch_size": 8,
        "steps": 10,
        "autocast_bf16": False,
    }
    return {**base, **extra}


def _context(model, config, x, seed=0):
    acts = model.prepare(x)
    ci = model.causal_importances(acts)
    return LossContext(model, acts, ci, config, 0.0, torch.Generator().manual_seed(seed))


def test_stochastic_recon_equals_hand_computation(two_layer):
    """One module, delta on: the loss equals the MSE of a forward written out by hand."""
    model = ComponentModel(two_layer, [ModulePattern(module_pattern="fc1", C=5)], "mlp", [4])
    config = config_from_dict(_cfg_dict([{"classname": "StochasticReconLoss", "coeff": 1.0}]))
    x = torch.randn(6, 3)
    ctx = _context(model, config, x, seed=3)
    loss = stochastic_recon(ctx, "all")

    g = ctx.ci.lower["fc1"]
    gen = torch.Generator().manual_seed(3)
    r = torch.rand(g.shape, generator=gen)
    md = torch.rand(g.shape[:-1], generator=gen)
    comp = model.components_of("fc1")
    m = g + (1 - g) * r
    delta = two_layer.fc1.weight - comp.U.T @ comp.V
    hidden = ((x @ comp.V.T) * m) @ comp.U + md[:, None] * (x @ delta.T) + two_layer.fc1.bias
    out = two_layer.fc2(torch.relu(hidden))
    expected = ((out - two_layer(x)) ** 2).mean()
    assert loss.item() == pytest.approx(expected.item(), rel=1e-5)


def test_layerwise_equals_all_layers_for_one_module(two_layer):
    model = ComponentModel(two_layer, [ModulePattern(module_pattern="fc1", C=5)], "mlp", [4])
    config = config_from_dict(_cfg_dict([{"classname": "StochasticReconLoss", "coeff": 1.0}]))
    x = torch.randn(6, 3)
    all_layers = stochastic_recon(_context(model, config, x, seed=1), "all")
    layerwise = stochastic_recon(_context(model, config, x, seed=1), "layerwise")
    assert layerwise.item() == pytest.approx(all_layers.item(), rel=1e-6)


def test_layerwise_averages_over_layers(two_layer):
    """With two modules the layerwise loss is the mean of the two single-module forwards."""
    patterns = [ModulePattern(module_pattern="fc*", C=3)]
    model = ComponentModel(two_layer, patterns, "vector_mlp", [4])
    config = config_from_dict(
        _cfg_dict(
            [{"classname": "CIMaskedReconLayerwiseLoss", "coeff": 1.0}],
            module_info=[{"module_pattern": "fc*", "C": 3}],
        )
    )
    x = torch.randn(5, 3)
    ctx = _context(model, config, x)
    _, terms = compute_losses(ctx)
    per_layer = []
    for name in ["fc1", "fc2"]:
        out = model.masked_forward(ctx.acts, {name: ModuleMask(mask=ctx.ci.lower[name])})
        per_layer.append(((out - ctx.acts.clean.output) ** 2).mean())
    expected = (per_layer[0] + per_layer[1]) / 2
    assert terms["CIMaskedReconLayerwiseLoss"].item() == pytest.approx(expected.item(), rel=1e-6)


def test_unmasked_recon_is_zero_for_an_exact_factorisation(two_layer):
    model = ComponentModel(two_layer, [ModulePattern(module_pattern="fc1", C=3)], "mlp", [4])
    comp = model.components_of("fc1")
    with torch.no_grad():  # W (4x3) = Uᵀ V with V = I, U = Wᵀ
        comp.V.copy_(torch.eye(3))
        comp.U.copy_(two_layer.fc1.weight.T)
    config = config_from_dict(_cfg_dict([{"classname": "UnmaskedReconLoss", "coeff": 1.0}]))
    _, terms = compute_losses(_context(model, config, torch.randn(4, 3)))
    assert terms["UnmaskedReconLoss"].item() == pytest.approx(0.0, abs=1e-12)


def test_total_is_coefficient_weighted_sum(two_layer):
    model = ComponentModel(two_layer, [ModulePattern(module_pattern="fc1", C=5)], "mlp", [4])
    config = config_from_dict(
        _cfg_dict(
            [
                {"classname": "CIMaskedReconLoss", "coeff": 2.0},
                {"classname": "ImportanceMinimalityLoss", "coeff": 0.5, "pnorm": 1.0},
                {"classname": "FaithfulnessLoss", "coeff": 0.0},
            ]
        )
    )
    total, terms = compute_losses(_context(model, config, torch.randn(4, 3)))
    expected = 2 * terms["CIMaskedReconLoss"] + 0.5 * terms["ImportanceMinimalityLoss"]
    assert "FaithfulnessLoss" in terms  # computed and logged even at coefficient 0
    assert total.item() == pytest.approx(expected.item(), rel=1e-6)
