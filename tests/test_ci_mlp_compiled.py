"""The torch.compile'd CI-function kernels against the eager fused op, and their fallback."""

import pytest
import torch

from spd_core.model import ci_mlp_compiled
from spd_core.model.ci_functions import make_ci_fn
from spd_core.model.ci_mlp_compiled import compiled_kernels_work, compiled_per_component_gelu_mlp
from spd_core.model.ci_mlp_kernel import per_component_gelu_mlp

H = 2 * ci_mlp_compiled.BLOCK  # two blocks: the per-block gradients must be concatenated in order
PADDED_H = H + 3  # a last block zero-padded to full size: its padding must add nothing
# Inductor emits C++ on the CPU and Triton on a GPU: where one is present, both are checked.
DEVICES = ["cpu", *(["cuda"] if torch.cuda.is_available() else [])]


def _inputs(rows: int, C: int, device: str = "cpu", hidden: int = H) -> tuple[torch.Tensor, ...]:
    gen = torch.Generator().manual_seed(1)
    x = torch.randn(rows, C, generator=gen)
    w1, b1, w2 = (torch.randn(C, hidden, generator=gen) for _ in range(3))
    b2 = torch.randn(C, generator=gen)
    return tuple(t.to(device).requires_grad_() for t in (x, w1, b1, w2, b2))


@pytest.mark.parametrize("device", DEVICES)
@pytest.mark.parametrize(
    ("rows", "C", "hidden"), [(37, 5, H), (300, 19, H), (37, 5, PADDED_H)]
)  # odd sizes: vector tails
def test_values_and_every_gradient_match_the_eager_op(rows, C, hidden, device):
    inputs = _inputs(rows, C, device, hidden)
    weights = torch.randn(rows, C, generator=torch.Generator().manual_seed(2)).to(device)
    compiled_out = compiled_per_component_gelu_mlp(*inputs)
    assert compiled_kernels_work() is True  # not a silent fallback to the eager op
    eager_out = per_component_gelu_mlp(*inputs)
    torch.testing.assert_close(compiled_out, eager_out, rtol=1e-5, atol=1e-5)
    compiled_grads = torch.autograd.grad((compiled_out * weights).sum(), inputs)
    eager_grads = torch.autograd.grad((eager_out * weights).sum(), inputs)
    for name, a, b in zip(("x", "w1", "b1", "w2", "b2"), compiled_grads, eager_grads, strict=True):
        torch.testing.assert_close(a, b, rtol=1e-4, atol=1e-4, msg=name)


def test_leading_dimensions_are_kept():
    x, w1, b1, w2, b2 = _inputs(6, 3)
    x3 = x.detach().reshape(2, 3, 3)
    out = compiled_per_component_gelu_mlp(x3, w1, b1, w2, b2)
    assert out.shape == (2, 3, 3)
    torch.testing.assert_close(out, per_component_gelu_mlp(x3, w1, b1, w2, b2))


def test_a_failed_compile_warns_and_falls_back_to_the_eager_op(monkeypatch):
    def broken(*args):
        raise RuntimeError("no C++ compiler")

    monkeypatch.setattr(ci_mlp_compiled, "_compiled_forward", broken)
    monkeypatch.setattr(ci_mlp_compiled._State, "works", None)
    inputs = _inputs(8, 2)
    with pytest.warns(
        RuntimeWarning, match="compile_ci_fn: torch.compile failed.*no C\\+\\+ compiler"
    ):
        out = compiled_per_component_gelu_mlp(*inputs)
    torch.testing.assert_close(out, per_component_gelu_mlp(*inputs))
    assert compiled_kernels_work() is False


def test_a_failure_after_the_kernels_worked_is_raised(monkeypatch):
    def broken(*args):
        raise RuntimeError("out of memory")

    monkeypatch.setattr(ci_mlp_compiled, "_compiled_forward", broken)
    monkeypatch.setattr(ci_mlp_compiled._State, "works", True)
    with pytest.raises(RuntimeError, match="out of memory"):
        compiled_per_component_gelu_mlp(*_inputs(8, 2))


def test_make_ci_fn_selects_the_compiled_kernels_only_for_the_papers_mlp():
    fn = make_ci_fn("mlp", C=4, d_in=9, hidden=[H], compiled=True)
    assert fn.net.fused_op is compiled_per_component_gelu_mlp
    assert make_ci_fn("mlp", C=4, d_in=9, hidden=[H]).net.fused_op is per_component_gelu_mlp
    with pytest.raises(ValueError, match="only for ci_fn_type 'mlp' with one hidden layer"):
        make_ci_fn("vector_mlp", C=4, d_in=9, hidden=[H], compiled=True)
