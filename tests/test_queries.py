"""spd_core.queries: importances and outputs under keep/ablate, CI and stochastic masks."""

import pytest
import torch

from spd_core.config import ModulePattern
from spd_core.model.component_model import ComponentModel
from spd_core.model.masks import ModuleMask
from spd_core.queries import MaskSpec, ablated_outputs, importances, io_signature


@pytest.fixture
def model(two_layer) -> ComponentModel:
    patterns = [ModulePattern(module_pattern="fc1", C=3), ModulePattern(module_pattern="fc2", C=2)]
    return ComponentModel(two_layer, patterns, generator=torch.Generator().manual_seed(1))


@pytest.fixture
def x() -> torch.Tensor:
    return torch.randn(5, 3, generator=torch.Generator().manual_seed(2))


def test_all_components_kept_with_delta_reproduce_the_target(model, x, two_layer):
    spec = MaskSpec(mode="ablate", use_delta=True)
    result = ablated_outputs(model, x, spec, "mse")
    assert result.outputs.shape == (1, 5, 2)
    torch.testing.assert_close(result.outputs[0], two_layer(x), atol=1e-6, rtol=0)
    torch.testing.assert_close(result.target, two_layer(x))
    assert result.divergence.abs().max() < 1e-10


def test_ablating_every_component_of_the_last_layer_leaves_its_bias(model, x, two_layer):
    spec = MaskSpec(mode="ablate", modules=["fc2"], components={"fc2": [0, 1]})
    out = ablated_outputs(model, x, spec, "mse").outputs[0]
    torch.testing.assert_close(out, two_layer.fc2.bias.detach().expand(5, 2))


def test_keeping_one_component_runs_its_rank_one_weight_only(model, x, two_layer):
    spec = MaskSpec(mode="keep", modules=["fc1"], components={"fc1": [1]})
    result = ablated_outputs(model, x, spec, "mse")
    comp = model.components_of("fc1")
    hidden = (x @ comp.V[1]).unsqueeze(-1) * comp.U[1] + two_layer.fc1.bias
    expected = two_layer.fc2(torch.relu(hidden))
    torch.testing.assert_close(result.outputs[0], expected, atol=1e-6, rtol=0)
    manual_mse = ((expected - two_layer(x)) ** 2).mean(-1)
    torch.testing.assert_close(result.divergence[0], manual_mse, atol=1e-6, rtol=0)


def test_ci_mode_masks_with_the_lower_importances(model, x):
    lower = importances(model, x)
    acts = model.prepare(x)
    expected = model.masked_forward(acts, {n: ModuleMask(lower[n]) for n in model.module_names})
    out = ablated_outputs(model, x, MaskSpec(mode="ci"), "mse").outputs[0]
    torch.testing.assert_close(out, expected)


def test_rounded_ci_above_every_importance_equals_keeping_nothing(model, x):
    rounded = ablated_outputs(model, x, MaskSpec(mode="rounded_ci", rounding_threshold=2.0), "kl")
    nothing = ablated_outputs(model, x, MaskSpec(mode="keep"), "kl")
    torch.testing.assert_close(rounded.outputs, nothing.outputs)
    torch.testing.assert_close(rounded.divergence, nothing.divergence)


def test_stochastic_samples_are_reproducible_from_the_seed_and_differ_between_samples(model, x):
    spec = MaskSpec(mode="stochastic", n_samples=3, seed=7, use_delta=True)
    a = ablated_outputs(model, x, spec, "mse")
    b = ablated_outputs(model, x, spec, "mse")
    assert a.outputs.shape == (3, 5, 2) and a.divergence.shape == (3, 5)
    torch.testing.assert_close(a.outputs, b.outputs, atol=0, rtol=0)
    assert not torch.allclose(a.outputs[0], a.outputs[1])


def test_importances_are_in_unit_interval_with_one_column_per_component(model, x):
    lower = importances(model, x, "lower")
    upper = importances(model, x, "upper")
    assert {n: t.shape for n, t in lower.items()} == {"fc1": (5, 3), "fc2": (5, 2)}
    assert all(((t >= 0) & (t <= 1)).all() for t in lower.values())
    assert set(upper) == set(lower)


def test_io_signature_of_a_toy_target_and_of_an_unknown_one():
    sig = io_signature({"kind": "toy", "spec": {"n_features": 100}})
    assert sig is not None
    assert (sig.input_shape, sig.input_dtype, sig.output_shape) == ((100,), torch.float32, (100,))
    assert io_signature({"kind": "hf"}) is None
