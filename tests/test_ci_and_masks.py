"""CI functions, sigmoids, masks and routing."""

import pytest
import torch

from spd_core.model.ci_functions import make_ci_fn
from spd_core.model.masks import stochastic_masks, uniform_k_subset_routing
from spd_core.model.sigmoids import lower_leaky_clamped, lower_leaky_value, upper_leaky


@pytest.mark.parametrize(
    ("fn_type", "inp_shape", "n_params"),
    [
        ("mlp", (7, 5), 5 * (3 * 4 + 1)),  # C·(3h+1) for one hidden layer h=4
        ("vector_mlp", (7, 6), 5 * (6 * 4 + 4 + 4 + 1)),
        ("shared_mlp", (7, 6), 6 * 4 + 4 + 4 * 5 + 5),
    ],
)
def test_ci_function_shapes_and_sizes(fn_type, inp_shape, n_params):
    fn = make_ci_fn(fn_type, C=5, d_in=6, hidden=[4])
    assert fn(torch.randn(*inp_shape)).shape == (7, 5)
    assert sum(p.numel() for p in fn.parameters()) == n_params


def test_mlp_ci_matches_per_component_loop():
    fn = make_ci_fn("mlp", C=3, d_in=9, hidden=[4, 2])
    h = torch.randn(5, 3)
    out = fn(h)
    for c in range(3):
        a = h[:, c : c + 1]
        for i, (w, b) in enumerate(zip(fn.net.weights, fn.net.biases, strict=True)):
            a = a @ w[c] + b[c]
            a = torch.nn.functional.gelu(a) if i < 2 else a
        torch.testing.assert_close(out[:, c], a[:, 0])


def test_ci_init_std_and_zero_bias():
    fn = make_ci_fn("vector_mlp", C=50, d_in=200, hidden=[64])
    assert fn.net.weights[0].std().item() == pytest.approx(2**0.5 / 200**0.5, rel=0.05)
    assert fn.net.weights[1].std().item() == pytest.approx(1 / 64**0.5, rel=0.05)
    assert all(b.abs().sum() == 0 for b in fn.net.biases)


def test_sigmoid_values():
    z = torch.tensor([-2.0, 0.5, 3.0])
    assert lower_leaky_clamped(z).tolist() == [0.0, 0.5, 1.0]
    assert lower_leaky_value(z).tolist() == pytest.approx([-0.02, 0.5, 1.0])
    assert upper_leaky(z).tolist() == pytest.approx([0.0, 0.5, 1.02])


def test_clamped_lower_leaks_only_gradient_that_raises_ci():
    z = torch.tensor([-2.0, -2.0, 0.5, 3.0], requires_grad=True)
    grad_out = torch.tensor([-1.0, 1.0, 1.0, 1.0])  # loss gradient; -1 means "increase z"
    lower_leaky_clamped(z).backward(grad_out)
    assert z.grad.tolist() == pytest.approx([-0.01, 0.0, 1.0, 0.0])


def test_upper_leaky_gradient():
    z = torch.tensor([-1.0, 0.5, 2.0], requires_grad=True)
    upper_leaky(z).sum().backward()
    assert z.grad.tolist() == pytest.approx([0.0, 1.0, 0.01])


def test_sigmoid_gradients_at_the_kinks():
    """z = 0 and z = 1 belong to [0, 1] for the upper sigmoid (as clamp's gradient has it), and
    to (0, 1] for the lower one, whose z = 0 only leaks a gradient that raises z."""
    z = torch.tensor([0.0, 0.0, 1.0, 1.0], requires_grad=True)
    lower_leaky_clamped(z).backward(torch.tensor([-2.0, 2.0, 3.0, -3.0]))
    assert z.grad.tolist() == pytest.approx([-0.02, 0.0, 3.0, -3.0])
    z.grad = None
    upper_leaky(z).backward(torch.tensor([2.0, -2.0, 3.0, -3.0]))
    assert z.grad.tolist() == pytest.approx([2.0, -2.0, 3.0, -3.0])


def test_continuous_masks_lie_between_ci_and_one_and_carry_gradient():
    g = torch.rand(1000, 4, requires_grad=True)
    masks = stochastic_masks({"a": g}, "continuous", True, torch.Generator().manual_seed(0))
    m = masks["a"].mask
    assert bool(((m >= g - 1e-7) & (m <= 1)).all())
    assert masks["a"].delta_mask.shape == (1000,)
    m.sum().backward()
    assert g.grad is not None and bool((g.grad >= 0).all())


def test_binomial_masks_are_ci_or_one():
    g = torch.full((2000, 3), 0.25)
    m = stochastic_masks({"a": g}, "binomial", False, torch.Generator().manual_seed(0))["a"]
    assert m.delta_mask is None
    values = set(m.mask.flatten().tolist())
    assert values == {0.25, 1.0}
    assert (m.mask == 1).float().mean().item() == pytest.approx(0.5, abs=0.03)


def test_uniform_k_subset_routes_between_one_and_all_layers_uniformly():
    names = ["a", "b", "c", "d"]
    routing = uniform_k_subset_routing(
        names, torch.Size([20000]), torch.Generator().manual_seed(0), torch.device("cpu")
    )
    k = torch.stack([routing[n] for n in names], -1).sum(-1)
    assert int(k.min()) == 1 and int(k.max()) == 4
    for value in range(1, 5):
        assert (k == value).float().mean().item() == pytest.approx(0.25, abs=0.02)
    for n in names:  # each layer routed with prob (1+2+3+4)/16 = 0.625
        assert routing[n].float().mean().item() == pytest.approx(0.625, abs=0.02)
