"""Subset routing: uniform-k (the default) and static probability, selectable per subset loss."""

import pytest
import torch

from spd_core.config import (
    ConfigError,
    ModulePattern,
    StaticProbabilityRouting,
    UniformKSubsetRouting,
    config_from_dict,
)
from spd_core.losses import LossContext, compute_losses
from spd_core.model.component_model import ComponentModel
from spd_core.model.masks import static_probability_routing


def _config(loss: dict):
    return config_from_dict(
        {
            "module_info": [{"module_pattern": "fc*", "C": 3}],
            "loss_metric_configs": [loss],
            "batch_size": 6,
            "steps": 10,
            "autocast_bf16": False,
        }
    )


def _terms(model, config, x, seed):
    acts = model.prepare(x)
    ci = model.causal_importances(acts)
    ctx = LossContext(model, acts, ci, config, 0.0, torch.Generator().manual_seed(seed))
    return compute_losses(ctx)[1]


def test_static_probability_routes_each_module_and_position_independently_with_p():
    shape = torch.Size([3, 5])
    routed = static_probability_routing(
        ["a", "b"], shape, 0.3, torch.Generator().manual_seed(7), torch.device("cpu")
    )
    u = torch.rand((3, 5, 2), generator=torch.Generator().manual_seed(7))
    assert torch.equal(routed["a"], u[..., 0] < 0.3) and torch.equal(routed["b"], u[..., 1] < 0.3)
    many = static_probability_routing(["a"], torch.Size([20000]), 0.3, None, torch.device("cpu"))
    assert float(many["a"].float().mean()) == pytest.approx(0.3, abs=0.02)


def test_ci_masked_subset_loss_replaces_exactly_the_routed_module_positions(two_layer):
    """By hand: fc1 and fc2 each use their components (mask g) at the positions u < p and the
    target's own weights elsewhere, u drawn per (position, module) after nothing else."""
    model = ComponentModel(two_layer, [ModulePattern(module_pattern="fc*", C=3)], "mlp", [4])
    config = _config(
        {
            "classname": "CIMaskedReconSubsetLoss",
            "coeff": 1.0,
            "routing": {"type": "static_probability", "p": 0.5},
        }
    )
    x = torch.randn(6, 3)
    loss = _terms(model, config, x, seed=4)["CIMaskedReconSubsetLoss"]

    ci = model.causal_importances(model.prepare(x)).lower
    u = torch.rand((6, 2), generator=torch.Generator().manual_seed(4))
    c1, c2 = model.components_of("fc1"), model.components_of("fc2")
    comp1 = ((x @ c1.V.T) * ci["fc1"]) @ c1.U + two_layer.fc1.bias
    h = torch.relu(torch.where((u[:, 0] < 0.5)[:, None], comp1, two_layer.fc1(x)))
    comp2 = ((h @ c2.V.T) * ci["fc2"]) @ c2.U + two_layer.fc2.bias
    out = torch.where((u[:, 1] < 0.5)[:, None], comp2, two_layer.fc2(h))
    expected = ((out - two_layer(x)) ** 2).mean()
    assert loss.item() == pytest.approx(expected.item(), rel=1e-5)


def test_probability_one_routes_everything_like_the_all_layers_loss(two_layer):
    """The masks are drawn before the routing, so with p = 1 the subset loss is the all-layers
    loss of the same draw."""
    model = ComponentModel(two_layer, [ModulePattern(module_pattern="fc*", C=3)], "mlp", [4])
    x = torch.randn(6, 3)
    subset = _config(
        {
            "classname": "StochasticReconSubsetLoss",
            "coeff": 1.0,
            "routing": {"type": "static_probability", "p": 1.0},
        }
    )
    everything = _config({"classname": "StochasticReconLoss", "coeff": 1.0})
    got = _terms(model, subset, x, seed=2)["StochasticReconSubsetLoss"]
    want = _terms(model, everything, x, seed=2)["StochasticReconLoss"]
    assert got.item() == pytest.approx(want.item(), rel=1e-6)


@pytest.mark.parametrize(
    "classname", ["StochasticReconSubsetLoss", "CIMaskedReconSubsetLoss", "PGDReconSubsetLoss"]
)
def test_subset_losses_default_to_uniform_k_and_take_static_probability(classname):
    extra = {"step_size": 1.0, "n_steps": 1} if classname.startswith("PGD") else {}
    loss = {"classname": classname, "coeff": 1.0, **extra}
    assert isinstance(_config(loss).loss_metric_configs[0].routing, UniformKSubsetRouting)
    static = _config({**loss, "routing": {"type": "static_probability", "p": 0.25}})
    assert static.loss_metric_configs[0].routing == StaticProbabilityRouting(
        type="static_probability", p=0.25
    )


@pytest.mark.parametrize(
    ("routing", "message"),
    [
        ({"type": "static_probability"}, r"routing\.static_probability\.p: Field required"),
        ({"type": "static_probability", "p": 0.0}, r"p: Input should be greater than 0"),
        ({"type": "static_probability", "p": 1.5}, r"p: Input should be less than or equal to 1"),
        ({"type": "top_k"}, r"routing"),
    ],
)
def test_bad_routing_is_named(routing, message):
    with pytest.raises(ConfigError, match=message):
        _config({"classname": "StochasticReconSubsetLoss", "coeff": 1.0, "routing": routing})
