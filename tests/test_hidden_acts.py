"""StochasticHiddenActsReconLoss: decomposed modules' inputs under stochastic masks against the
clean pass's, as a loss term and as an evaluation metric."""

import pytest
import torch

from spd_core.config import ModulePattern, config_from_dict
from spd_core.eval.evaluation import evaluate
from spd_core.losses import LossContext, compute_losses
from spd_core.model.component_model import ComponentModel


def _config(**extra):
    return config_from_dict(
        {
            "module_info": [{"module_pattern": "fc*", "C": 3}],
            "loss_metric_configs": [{"classname": "StochasticHiddenActsReconLoss", "coeff": 1.0}],
            "batch_size": 5,
            "steps": 10,
            "autocast_bf16": False,
            **extra,
        }
    )


def _by_hand(two_layer, model, x, seed):
    """Masks drawn module by module (r, then the delta mask); fc1's input is x itself, fc2's is
    ReLU of fc1's masked output. Returns (Σ squared error of fc2's input, its element count)."""
    ci = model.causal_importances(model.prepare(x)).lower
    gen = torch.Generator().manual_seed(seed)
    r = torch.rand(ci["fc1"].shape, generator=gen)
    md = torch.rand(ci["fc1"].shape[:-1], generator=gen)
    c1 = model.components_of("fc1")
    m = ci["fc1"] + (1 - ci["fc1"]) * r
    delta = two_layer.fc1.weight - c1.U.T @ c1.V
    masked = ((x @ c1.V.T) * m) @ c1.U + md[:, None] * (x @ delta.T) + two_layer.fc1.bias
    clean = two_layer.fc1(x)
    sq = ((torch.relu(masked) - torch.relu(clean)) ** 2).sum()
    return sq.item(), clean.numel()


def test_loss_is_the_summed_input_error_over_every_element_of_every_module(two_layer):
    model = ComponentModel(two_layer, [ModulePattern(module_pattern="fc*", C=3)], "mlp", [4])
    config = _config()
    x = torch.randn(5, 3)
    acts = model.prepare(x)
    ctx = LossContext(
        model, acts, model.causal_importances(acts), config, 0.0, torch.Generator().manual_seed(3)
    )
    loss = compute_losses(ctx)[1]["StochasticHiddenActsReconLoss"]
    sq, n_fc2 = _by_hand(two_layer, model, x, seed=3)
    assert sq > 0
    assert loss.item() == pytest.approx(sq / (x.numel() + n_fc2), rel=1e-5)  # fc1 adds 0 error
    loss.backward()
    assert model.components_of("fc1").U.grad.abs().sum() > 0
    assert model.components_of("fc2").U.grad is None  # fc2's output is no module's input


def test_evaluation_reports_it_per_module_and_in_total(two_layer):
    model = ComponentModel(two_layer, [ModulePattern(module_pattern="fc*", C=3)], "mlp", [4])
    config = _config(
        loss_metric_configs=[{"classname": "CIMaskedReconLoss", "coeff": 1.0}],
        eval={"hidden_acts_recon": True, "n_eval_batches": 2},
    )

    def batch_fn(b, gen):
        return torch.randn(b, 3, generator=gen)

    m = evaluate(model, config, batch_fn, torch.Generator().manual_seed(0), step=10)
    assert m["hidden_acts_recon/fc1"] == 0.0  # the first module's input never changes
    assert m["hidden_acts_recon/fc2"] > 0
    # total: Σ errors / Σ counts, fc1 3 and fc2 4 elements per item
    assert m["hidden_acts_recon/total"] == pytest.approx(m["hidden_acts_recon/fc2"] * 4 / 7)
    off = evaluate(model, _config(), batch_fn, torch.Generator().manual_seed(0), step=10)
    assert not any(k.startswith("hidden_acts_recon/") for k in off)
    assert "loss/StochasticHiddenActsReconLoss" in off
