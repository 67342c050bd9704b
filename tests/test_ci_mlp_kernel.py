"""The fused per-component GELU MLP (the paper's `mlp` CI function) against hand values and autograd."""

import pytest
import torch
from torch.nn import functional as F

from spd_core.model.ci_functions import make_ci_fn
from spd_core.model.ci_mlp_kernel import per_component_gelu_mlp


def test_value_and_input_gradient_by_hand():
    # one component, H = 2: pre = [1.5, -2], gelu(z) = z Φ(z), gelu'(z) = Φ(z) + z φ(z)
    x = torch.tensor([[1.0]], requires_grad=True)
    w1, b1 = torch.tensor([[1.0, -2.0]]), torch.tensor([[0.5, 0.0]])
    w2, b2 = torch.tensor([[2.0, 1.0]]), torch.tensor([0.25])
    out = per_component_gelu_mlp(x, w1, b1, w2, b2)
    # 2 · 1.5 · 0.9331928 + 1 · (−2) · 0.0227501 + 0.25
    assert out.item() == pytest.approx(3.0040781, abs=1e-6)
    out.backward()
    # 2 · (0.9331928 + 1.5 · 0.1295176) · 1 + 1 · (0.0227501 − 2 · 0.0539910) · (−2)
    assert x.grad.item() == pytest.approx(2.4254022, abs=1e-6)


def test_matches_autograd_of_the_plain_expression_in_float64():
    gen = torch.Generator().manual_seed(0)
    x = torch.randn(3, 4, 5, dtype=torch.float64, generator=gen, requires_grad=True)
    params = [
        torch.randn(5, 6, dtype=torch.float64, generator=gen, requires_grad=True) for _ in range(3)
    ]
    b2 = torch.randn(5, dtype=torch.float64, generator=gen, requires_grad=True)
    w1, b1, w2 = params

    def plain(x, w1, b1, w2, b2):
        return (F.gelu(x.unsqueeze(-1) * w1 + b1) * w2).sum(-1) + b2

    inputs = (x, w1, b1, w2, b2)
    torch.testing.assert_close(per_component_gelu_mlp(*inputs), plain(*inputs))
    assert torch.autograd.gradcheck(per_component_gelu_mlp, inputs)
    weights = torch.randn(3, 4, 5, dtype=torch.float64, generator=gen)
    fused = torch.autograd.grad((per_component_gelu_mlp(*inputs) * weights).sum(), inputs)
    expected = torch.autograd.grad((plain(*inputs) * weights).sum(), inputs)
    for a, b in zip(fused, expected, strict=True):
        torch.testing.assert_close(a, b)


def test_mlp_ci_function_with_one_hidden_layer_uses_the_same_math():
    fn = make_ci_fn("mlp", C=4, d_in=9, hidden=[3])
    h = torch.randn(7, 4)
    (w1, w2), (b1, b2) = fn.net.weights, fn.net.biases
    expected = (F.gelu(h.unsqueeze(-1) * w1[:, 0, :] + b1) * w2[:, :, 0]).sum(-1) + b2[:, 0]
    torch.testing.assert_close(fn(h), expected)


def test_mlp_ci_function_under_bf16_autocast_runs_in_float32_and_trains():
    """Autocast hands the CI function bf16 inner activations (x V); the fused backward used to
    fail mixing them with float32 saved tensors ("expected scalar type ... but found ...")."""
    fn = make_ci_fn("mlp", C=4, d_in=9, hidden=[3], gen=torch.Generator().manual_seed(0))
    x = torch.randn(7, 9)
    V = torch.randn(9, 4, requires_grad=True)
    with torch.autocast("cpu", dtype=torch.bfloat16):
        inner = x @ V
        out = fn(inner)
    assert inner.dtype == torch.bfloat16 and out.dtype == torch.float32
    out.sum().backward()
    (w1, w2), (b1, b2) = fn.net.weights, fn.net.biases
    h = inner.detach().float()  # the same bf16-rounded inputs, plain float32 math
    expected = (F.gelu(h.unsqueeze(-1) * w1[:, 0, :] + b1) * w2[:, :, 0]).sum(-1) + b2[:, 0]
    torch.testing.assert_close(out, expected)
    assert V.grad is not None and torch.isfinite(V.grad).all()
