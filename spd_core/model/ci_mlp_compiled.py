"""The paper's CI function (C scalar MLPs 1 → H → 1, GELU) as torch.compile'd fused kernels.

`ci_mlp_kernel` runs the same math in eager PyTorch, where every pass over the (C, rows, H) hidden
activations goes through memory. Here the hidden units are written out one by one (blocks of
`BLOCK`) as elementwise expressions on (C, rows) tensors, so that inductor emits one loop nest that
keeps them in registers: the forward writes only the output, and the backward recomputes the
pre-activations and produces every gradient in one kernel. Nothing of size C × rows × H is stored.

The first call compiles (tens of seconds cold, seconds from torch's on-disk cache); rows and C are
dynamic, so later batch sizes reuse the kernels. Where compiling fails (no C++ compiler on a CPU
machine, no Triton on a GPU), a warning says so and the eager kernel takes over.
"""

from __future__ import annotations

import math
import warnings

import torch
from torch import Tensor
from torch.autograd.function import FunctionCtx

from spd_core.model.ci_mlp_kernel import per_component_gelu_mlp

BLOCK = 8  # hidden units per compiled kernel call; the loop over them is unrolled
_INV_SQRT2 = 1.0 / math.sqrt(2.0)
_INV_SQRT_2PI = 1.0 / math.sqrt(2.0 * math.pi)


def _block_forward(x_t: Tensor, w1: Tensor, b1: Tensor, w2: Tensor, acc: Tensor) -> Tensor:
    """acc + Σ_h w2[:, h] · gelu(x_t · w1[:, h] + b1[:, h]) over this block's hidden units, (C, rows).
    The running sum goes through the kernel, so adding a block costs no launch of its own."""
    out = acc
    for h in range(w1.shape[1]):
        pre = x_t * w1[:, h : h + 1] + b1[:, h : h + 1]
        out = out + w2[:, h : h + 1] * (0.5 * pre * (1.0 + torch.erf(pre * _INV_SQRT2)))
    return out


def _block_backward(
    x_t: Tensor, w1: Tensor, b1: Tensor, w2: Tensor, g_t: Tensor, grad_x: Tensor
) -> tuple[Tensor, Tensor, Tensor, Tensor]:
    """grad_x plus this block's part of it, and the block's gradients of w1, b1, w2, given the
    output gradient g_t (C, rows)."""
    grad_w1, grad_b1, grad_w2 = [], [], []
    for h in range(w1.shape[1]):
        pre = x_t * w1[:, h : h + 1] + b1[:, h : h + 1]
        cdf = 0.5 * (1.0 + torch.erf(pre * _INV_SQRT2))
        grad_pre = (
            g_t * w2[:, h : h + 1] * (cdf + pre * torch.exp(-0.5 * pre * pre) * _INV_SQRT_2PI)
        )
        grad_x = grad_x + grad_pre * w1[:, h : h + 1]
        grad_w1.append((grad_pre * x_t).sum(1))
        grad_b1.append(grad_pre.sum(1))
        grad_w2.append((g_t * pre * cdf).sum(1))
    return grad_x, torch.stack(grad_w1, 1), torch.stack(grad_b1, 1), torch.stack(grad_w2, 1)


_compiled_forward = torch.compile(_block_forward, dynamic=True)
_compiled_backward = torch.compile(_block_backward, dynamic=True)


def _blocked(weight: Tensor) -> Tensor:
    """(C, H) → (blocks, C, BLOCK) in one copy, zero-padded to whole blocks: block i is a
    contiguous view. A padded unit adds nothing: its w1, b1 and w2 are 0, and gelu(0) = 0."""
    C, H = weight.shape
    n = -(-H // BLOCK)
    padded = torch.nn.functional.pad(weight, (0, n * BLOCK - H))
    return padded.reshape(C, n, BLOCK).permute(1, 0, 2).contiguous()


class _CompiledPerComponentGeluMLP(torch.autograd.Function):
    @staticmethod
    def forward(  # type: ignore[override]
        ctx: FunctionCtx, x: Tensor, w1: Tensor, b1: Tensor, w2: Tensor, b2: Tensor
    ) -> Tensor:
        x_t = x.t().contiguous()  # (C, rows): rows are contiguous, the kernels vectorise along them
        out_t = b2.unsqueeze(1).expand_as(x_t).contiguous()
        for block in zip(*(_blocked(w) for w in (w1, b1, w2)), strict=True):
            out_t = _compiled_forward(x_t, *block, out_t)
        ctx.save_for_backward(x_t, w1, b1, w2)
        return out_t.t()

    @staticmethod
    def backward(ctx: FunctionCtx, grad_out: Tensor) -> tuple[Tensor, ...]:  # type: ignore[override]
        x_t, w1, b1, w2 = ctx.saved_tensors  # type: ignore[attr-defined]
        g_t = grad_out.t().contiguous()
        grad_x_t = torch.zeros_like(x_t)
        grads: list[tuple[Tensor, Tensor, Tensor]] = []
        for block in zip(*(_blocked(w) for w in (w1, b1, w2)), strict=True):
            grad_x_t, gw1, gb1, gw2 = _compiled_backward(x_t, *block, g_t, grad_x_t)
            grads.append((gw1, gb1, gw2))
        H = w1.shape[1]
        grad_w1, grad_b1, grad_w2 = (torch.cat(g, dim=1)[:, :H] for g in zip(*grads, strict=True))
        return grad_x_t.t(), grad_w1, grad_b1, grad_w2, grad_out.sum(0)


class _State:
    """Whether the compiled kernels have worked in this process (None: not tried yet)."""

    works: bool | None = None


def compiled_per_component_gelu_mlp(
    x: Tensor, w1: Tensor, b1: Tensor, w2: Tensor, b2: Tensor
) -> Tensor:
    """`per_component_gelu_mlp` through the compiled kernels; same signature and result.

    Falls back to the eager kernel, with a warning, if the first compilation in this process fails.
    """
    if _State.works is False:
        return per_component_gelu_mlp(x, w1, b1, w2, b2)
    flat = x.reshape(-1, x.shape[-1])
    try:
        out = _CompiledPerComponentGeluMLP.apply(flat, w1, b1, w2, b2)
    except Exception as err:  # any compiler failure; once the kernels have run, errors propagate
        if _State.works:
            raise
        _State.works = False
        warnings.warn(
            f"compile_ci_fn: torch.compile failed ({type(err).__name__}: {err}); "
            "the CI function runs on the eager kernel instead",
            RuntimeWarning,
            stacklevel=2,
        )
        return per_component_gelu_mlp(x, w1, b1, w2, b2)
    _State.works = True
    return out.reshape(x.shape)


def compiled_kernels_work() -> bool | None:
    """True once the compiled kernels ran in this process, False after a fallback, else None."""
    return _State.works
