"""The paper's CI function, C scalar MLPs 1 → H → 1 with GELU, as one autograd function.

Autograd over the plain expression materialises about a dozen (…, C, H) temporaries and reduces
them with broadcasting kernels. Here the hidden layer lives in a (C, rows, H) layout so that every
contraction (output, and the gradients of x, W₁ and W₂) is one batched matmul, and the backward
needs only three elementwise passes (the outer product, GELU's derivative, the bias sum). The
forward keeps the pre-activation and the hidden activation for the backward.
"""

from __future__ import annotations

import torch
from torch import Tensor
from torch.autograd.function import FunctionCtx
from torch.nn import functional as F


class _PerComponentGeluMLP(torch.autograd.Function):
    @staticmethod
    def forward(  # type: ignore[override]
        ctx: FunctionCtx, x: Tensor, w1: Tensor, b1: Tensor, w2: Tensor, b2: Tensor
    ) -> Tensor:
        x_t = x.t().contiguous()  # (C, rows)
        pre = torch.addcmul(b1.unsqueeze(1), x_t.unsqueeze(-1), w1.unsqueeze(1))  # (C, rows, H)
        hidden = F.gelu(pre)
        out_t = torch.bmm(hidden, w2.unsqueeze(-1)).squeeze(-1)
        ctx.save_for_backward(x_t, w1, w2, pre, hidden)
        return out_t.t() + b2

    @staticmethod
    def backward(ctx: FunctionCtx, grad_out: Tensor) -> tuple[Tensor, ...]:  # type: ignore[override]
        x_t, w1, w2, pre, hidden = ctx.saved_tensors  # type: ignore[attr-defined]
        g_t = grad_out.t().contiguous()  # (C, rows)
        grad_w2 = torch.bmm(g_t.unsqueeze(1), hidden).squeeze(1)
        grad_pre = torch.ops.aten.gelu_backward(g_t.unsqueeze(-1) * w2.unsqueeze(1), pre)
        grad_b1 = grad_pre.sum(1)
        grad_w1 = torch.bmm(x_t.unsqueeze(1), grad_pre).squeeze(1)
        grad_x = torch.bmm(grad_pre, w1.unsqueeze(-1)).squeeze(-1).t()
        return grad_x, grad_w1, grad_b1, grad_w2, grad_out.sum(0)


def per_component_gelu_mlp(x: Tensor, w1: Tensor, b1: Tensor, w2: Tensor, b2: Tensor) -> Tensor:
    """out[…, c] = Σ_h w2[c, h] · gelu(x[…, c] · w1[c, h] + b1[c, h]) + b2[c].

    x (…, C); w1, b1, w2 (C, H); b2 (C,). Returns (…, C), float32 math as the inputs.
    """
    flat = x.reshape(-1, x.shape[-1])
    out = _PerComponentGeluMLP.apply(flat, w1, b1, w2, b2)
    return out.reshape(x.shape)
