"""Per-module rank-one factors U, V (component-major) and the masked forward of one module.

Row c of V (C, d_in) reads the input, row c of U (C, d_out) writes the output; the module's
component weight is W_comp = Uᵀ V (d_out, d_in) and subcomponent c is the outer product u_c v_cᵀ.
"""

from __future__ import annotations

import math
from typing import Literal

import torch
from torch import Tensor, nn

ModuleKind = Literal["linear", "conv1d", "embedding"]


def module_kind(module: nn.Module) -> ModuleKind | None:
    """What SPD can decompose: nn.Linear, GPT-2 style Conv1D (weight stored d_in x d_out), nn.Embedding."""
    if isinstance(module, nn.Linear):
        return "linear"
    if isinstance(module, nn.Embedding):
        return "embedding"
    if type(module).__name__ == "Conv1D" and hasattr(module, "nf") and hasattr(module, "weight"):
        return "conv1d"
    return None


def target_weight(module: nn.Module, kind: ModuleKind) -> Tensor:
    """The weight the module applies as (d_out, d_in); for embeddings (vocab, d_emb) as stored."""
    w = module.weight.detach()
    return w.T if kind == "conv1d" else w


def rank_one_sum(U: Tensor, V: Tensor, kind: ModuleKind) -> Tensor:
    """Σ_c u_c v_cᵀ over the given rows of U (k, d_out) and V (k, d_in), in `target_weight`'s
    orientation: (d_out, d_in), or (vocab, d_emb) for embeddings."""
    w = U.T @ V  # (d_out, d_in)
    return w.T if kind == "embedding" else w


def as_stored_weight(weight: Tensor, kind: ModuleKind) -> Tensor:
    """A weight in `target_weight`'s orientation as the module's `weight` parameter holds it
    (GPT-2 Conv1D: (d_in, d_out)); the inverse of `target_weight`."""
    return weight.T if kind == "conv1d" else weight


class Components(nn.Module):
    """Factors U (C, d_out), V (C, d_in) of one module, plus its frozen weight and bias."""

    def __init__(self, module: nn.Module, C: int, generator: torch.Generator | None = None):
        super().__init__()
        kind = module_kind(module)
        if kind is None:
            raise TypeError(f"cannot decompose {type(module).__name__}")
        self.kind: ModuleKind = kind
        self.C = C
        weight = target_weight(module, kind).float()
        # embeddings: d_in is the vocab, d_out the embedding width, W stored (vocab, d_emb)
        if kind == "embedding":
            self.d_in, self.d_out = weight.shape
        else:
            self.d_out, self.d_in = weight.shape
        self.register_buffer("weight", weight.clone(), persistent=False)
        bias = getattr(module, "bias", None)
        self.register_buffer(
            "bias", None if bias is None else bias.detach().float().clone(), persistent=False
        )
        # a target on the meta device (target sharding) gets its weights later; the factors not
        dev = torch.device("cpu") if weight.is_meta else weight.device
        self.V = nn.Parameter(
            torch.randn(C, self.d_in, generator=generator).to(dev) / math.sqrt(self.d_in)
        )
        self.U = nn.Parameter(
            torch.randn(C, self.d_out, generator=generator).to(dev) / math.sqrt(C)
        )

    def component_weight(self) -> Tensor:
        """Σ_c u_c v_cᵀ, in the target weight's orientation."""
        return rank_one_sum(self.U, self.V, self.kind)

    def weight_delta(self) -> Tensor:
        """Δ = W − W_comp (differentiable in U and V)."""
        return self.weight - self.component_weight()

    def inner_acts(self, x: Tensor) -> Tensor:
        """h(x) = x V (…, C); for embeddings the V column of each token id."""
        if self.kind == "embedding":
            return nn.functional.embedding(x, self.V.T)
        return x.to(self.V.dtype) @ self.V.T

    def target_product(self, x: Tensor) -> Tensor:
        """x Wᵀ without bias (the token's row for embeddings)."""
        if self.kind == "embedding":
            return nn.functional.embedding(x, self.weight)
        return x.to(self.weight.dtype) @ self.weight.T

    def forward(
        self,
        x: Tensor,
        mask: Tensor | None = None,
        delta_mask: Tensor | None = None,
        inner: Tensor | None = None,
        target_product: Tensor | None = None,
    ) -> Tensor:
        """y = (h ⊙ m) U + m_δ (x Δᵀ) + b.

        Written as (h ⊙ (m − m_δ)) U + m_δ (x Wᵀ) + b, which is the same function of U and V but
        lets a caller pass `inner` = h(x) and `target_product` = x Wᵀ cached from the clean pass.
        `mask` is (…, C) or (C,); None means all ones. `delta_mask` is (…) per position.
        """
        h = self.inner_acts(x) if inner is None else inner
        m = torch.ones((), dtype=h.dtype, device=h.device) if mask is None else mask
        if delta_mask is None:
            out = (h * m) @ self.U
        else:
            xw = self.target_product(x) if target_product is None else target_product
            md = delta_mask.unsqueeze(-1)
            out = torch.addcmul((h * (m - md)) @ self.U, md, xw)
        if self.bias is not None:
            out = out + self.bias
        return out
