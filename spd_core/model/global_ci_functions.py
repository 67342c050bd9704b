"""Global causal-importance functions: one network reads every decomposed module's input and
gives all modules' raw importances at once (the reference's `ci_config: {mode: global}`).

With module inputs x_l (…, d_l) for the modules l = 1..L in the model's order and ΣC = C_1 + … + C_L:

- `global_shared_mlp`, per position:  z = MLP([x_1; …; x_L]) ∈ R^ΣC, split into blocks z_l (…, C_l).
  Hidden layers use GELU; no hidden layer makes it one linear map.
- `global_shared_transformer`, over the positions t of a sequence:
      r_t = W_in [rms(x_1,t); …; rms(x_L,t)] + b_in                       ∈ R^d_model
      per block:  r ← r + Attn(rms(r));   r ← r + MLP(rms(r))
      z_t = W_out r_t + b_out ∈ R^ΣC, split as above,
  where rms(v) = v / √(mean(v²) + ε) has no gain, MLP is a GELU MLP d_model → … → d_model, and
  Attn(u)_t = W_o concat_heads Σ_s softmax_s(q_t·k_s / √d_head) v_s with q = RoPE(W_q u),
  k = RoPE(W_k u), v = W_v u. The attention is bidirectional, as in the reference: the
  importance at position t may depend on later positions too.

An embedding module's input is its inner activations h = V[token] (C_l values), not token ids.
Initialisation as the per-module functions (N(0, gain²/fan_in), gain √2 before a nonlinearity
or for the input projection, 1 otherwise; zero biases) and U(±1/√fan_in) for the attention
projections, as the reference's.
"""

from __future__ import annotations

import math
from typing import Any

import torch
from torch import Tensor, nn
from torch.nn import functional as F

from spd_core.config import CITransformerConfig
from spd_core.model.ci_functions import SharedMLP


def _linear(
    d_in: int, d_out: int, gain: float, gen: torch.Generator | None, bias: bool = True
) -> nn.Linear:
    layer = nn.Linear(d_in, d_out, bias=bias)
    with torch.no_grad():
        layer.weight.copy_(torch.randn(d_out, d_in, generator=gen) * (gain / math.sqrt(d_in)))
        if bias:
            layer.bias.zero_()
    return layer


def _uniform_linear(d: int, gen: torch.Generator | None) -> nn.Linear:
    """d → d without bias, weights U(−1/√d, 1/√d) (nn.Linear's default, drawn from `gen`)."""
    layer = nn.Linear(d, d, bias=False)
    with torch.no_grad():
        layer.weight.copy_((torch.rand(d, d, generator=gen) * 2 - 1) / math.sqrt(d))
    return layer


def _rms(x: Tensor) -> Tensor:
    return F.rms_norm(x, (x.shape[-1],))


class GlobalCIFunction(nn.Module):
    """Holds the module order and sizes; maps {module: input} to {module: raw importances}."""

    fn_type: str

    def __init__(self, d_in: dict[str, int], C: dict[str, int]):
        super().__init__()
        self.module_names = list(d_in)
        self.d_in, self.C = dict(d_in), dict(C)

    def _concatenated(self, inputs: dict[str, Tensor], normalise: bool) -> Tensor:
        xs = [inputs[name] for name in self.module_names]
        lead = xs[0].shape[:-1]
        for name, x in zip(self.module_names, xs, strict=True):
            if x.shape[:-1] != lead or x.shape[-1] != self.d_in[name]:
                raise ValueError(
                    f"{self.fn_type}: every module's input must cover the same positions; "
                    f"'{self.module_names[0]}' gives {tuple(xs[0].shape)}, '{name}' gives "
                    f"{tuple(x.shape)} (expected last dim {self.d_in[name]})"
                )
        return torch.cat([_rms(x) for x in xs] if normalise else xs, dim=-1)

    def _split(self, z: Tensor) -> dict[str, Tensor]:
        blocks = torch.split(z, [self.C[n] for n in self.module_names], dim=-1)
        return dict(zip(self.module_names, blocks, strict=True))

    def architecture(self) -> dict[str, Any]:
        """What rebuilds this function (JSON-able): type, module order and sizes, widths."""
        return {
            "type": self.fn_type,
            "modules": self.module_names,
            "d_in": [self.d_in[n] for n in self.module_names],
            "C": [self.C[n] for n in self.module_names],
        }


class GlobalSharedMLP(GlobalCIFunction):
    """`global_shared_mlp`: one MLP Σd_l → hidden… → ΣC on the concatenated inputs."""

    fn_type = "global_shared_mlp"

    def __init__(
        self,
        d_in: dict[str, int],
        C: dict[str, int],
        hidden: list[int],
        gen: torch.Generator | None = None,
    ):
        super().__init__(d_in, C)
        self.hidden = list(hidden)
        self.mlp = SharedMLP(sum(C.values()), sum(d_in.values()), self.hidden, gen)

    def forward(self, inputs: dict[str, Tensor]) -> dict[str, Tensor]:
        return self._split(self.mlp(self._concatenated(inputs, normalise=False)))

    def architecture(self) -> dict[str, Any]:
        return {**super().architecture(), "hidden_dims": self.hidden}


def rotary(x: Tensor, base: float) -> Tensor:
    """RoPE on (…, seq, d_head): pair i = (x_i, x_{i+d/2}) at position p is rotated by the angle
    p · base^(−2i/d_head)."""
    seq, d = x.shape[-2], x.shape[-1]
    inv_freq = base ** (-torch.arange(0, d, 2, device=x.device, dtype=torch.float32) / d)
    angles = torch.arange(seq, device=x.device, dtype=torch.float32)[:, None] * inv_freq
    cos, sin = angles.cos().to(x.dtype), angles.sin().to(x.dtype)
    x1, x2 = x[..., : d // 2], x[..., d // 2 :]
    return torch.cat([x1 * cos - x2 * sin, x2 * cos + x1 * sin], dim=-1)


class RotarySelfAttention(nn.Module):
    """Bidirectional multi-head self-attention over dim −2 with RoPE on queries and keys."""

    def __init__(self, d_model: int, n_heads: int, rope_base: float, gen: torch.Generator | None):
        super().__init__()
        self.n_heads, self.rope_base = n_heads, rope_base
        self.q, self.k, self.v, self.o = (_uniform_linear(d_model, gen) for _ in range(4))

    def forward(self, x: Tensor) -> Tensor:
        def heads(t: Tensor) -> Tensor:  # (…, seq, d_model) → (…, heads, seq, d_head)
            return t.unflatten(-1, (self.n_heads, -1)).transpose(-3, -2)

        q = rotary(heads(self.q(x)), self.rope_base)
        k = rotary(heads(self.k(x)), self.rope_base)
        out = F.scaled_dot_product_attention(q, k, heads(self.v(x)))
        return self.o(out.transpose(-3, -2).flatten(-2))


class TransformerBlock(nn.Module):
    """r ← r + Attn(rms(r)); r ← r + MLP(rms(r))."""

    def __init__(self, cfg: CITransformerConfig, hidden: list[int], gen: torch.Generator | None):
        super().__init__()
        self.attn = RotarySelfAttention(cfg.d_model, cfg.n_heads, cfg.rope_base, gen)
        self.mlp = SharedMLP(cfg.d_model, cfg.d_model, hidden, gen)

    def forward(self, r: Tensor) -> Tensor:
        r = r + self.attn(_rms(r))
        return r + self.mlp(_rms(r))


class GlobalSharedTransformer(GlobalCIFunction):
    """`global_shared_transformer`: inputs (…, seq, d_l); attends over the seq dimension."""

    fn_type = "global_shared_transformer"

    def __init__(
        self,
        d_in: dict[str, int],
        C: dict[str, int],
        cfg: CITransformerConfig,
        gen: torch.Generator | None = None,
    ):
        super().__init__(d_in, C)
        self.cfg = cfg
        hidden = cfg.mlp_hidden_dims if cfg.mlp_hidden_dims is not None else [4 * cfg.d_model]
        self.project_in = _linear(sum(d_in.values()), cfg.d_model, math.sqrt(2.0), gen)
        self.blocks = nn.ModuleList(TransformerBlock(cfg, hidden, gen) for _ in range(cfg.n_blocks))
        self.head = _linear(cfg.d_model, sum(C.values()), 1.0, gen)

    def forward(self, inputs: dict[str, Tensor]) -> dict[str, Tensor]:
        first = self.module_names[0]
        if inputs[first].dim() < 3:
            raise ValueError(
                f"ci_fn_type 'global_shared_transformer' attends over sequence positions, but "
                f"module '{first}' has input shape {tuple(inputs[first].shape)} (batch, features) "
                "with no sequence dimension; use ci_fn_type 'global_shared_mlp'"
            )
        r = self.project_in(self._concatenated(inputs, normalise=True))
        for block in self.blocks:
            r = block(r)
        return self._split(self.head(r))

    def architecture(self) -> dict[str, Any]:
        return {**super().architecture(), "transformer": self.cfg.model_dump(mode="json")}


def make_global_ci_fn(
    fn_type: str,
    d_in: dict[str, int],
    C: dict[str, int],
    hidden: list[int],
    transformer: CITransformerConfig | None,
    gen: torch.Generator | None = None,
) -> GlobalCIFunction:
    """The global CI function of `fn_type` over the modules of `d_in` (in that order)."""
    if fn_type == "global_shared_mlp":
        return GlobalSharedMLP(d_in, C, hidden, gen)
    if fn_type == "global_shared_transformer":
        if transformer is None:
            raise ValueError("ci_fn_type 'global_shared_transformer' needs ci_transformer")
        return GlobalSharedTransformer(d_in, C, transformer, gen)
    raise ValueError(f"'{fn_type}' is not a global CI function type")
