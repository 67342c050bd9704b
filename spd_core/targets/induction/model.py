"""An attention-only transformer for the induction task: a token embedding, `n_layers` residual
blocks of causal multi-head attention, an unembedding; no MLPs, no norms.

Positions enter only through a learned relative bias per head and offset (T5-style, one scalar
per distance t − j, no buckets) added to the attention scores, so the residual stream carries
tokens alone and a previous-token head is one large bias at distance 1. q, k, v and o are
separate bias-free `nn.Linear`s, each called once per forward on one tensor, so SPD can decompose
`layers.*.attn.q_proj` and friends.
"""

from __future__ import annotations

import math

import torch
from torch import Tensor, nn


class CausalSelfAttention(nn.Module):
    """Multi-head causal self-attention with a learned relative position bias (n_heads, seq_len):
    score(t, j) = q_t · k_j / sqrt(d_head) + rel_bias[head, t − j] for j <= t."""

    def __init__(self, d_model: int, n_heads: int, seq_len: int) -> None:
        super().__init__()
        if d_model % n_heads:
            raise ValueError(f"d_model {d_model} is not divisible by n_heads {n_heads}")
        self.n_heads = n_heads
        self.d_head = d_model // n_heads
        self.q_proj = nn.Linear(d_model, d_model, bias=False)
        self.k_proj = nn.Linear(d_model, d_model, bias=False)
        self.v_proj = nn.Linear(d_model, d_model, bias=False)
        self.o_proj = nn.Linear(d_model, d_model, bias=False)
        self.rel_bias = nn.Parameter(torch.zeros(n_heads, seq_len))

    def _heads(self, x: Tensor) -> Tensor:
        """(B, S, d_model) -> (B, H, S, d_head)."""
        B, S, _ = x.shape
        return x.view(B, S, self.n_heads, self.d_head).transpose(1, 2)

    def pattern(self, q: Tensor, k: Tensor) -> Tensor:
        """Attention weights (B, H, S, S) of heads' queries and keys (B, H, S, d_head)."""
        S = q.shape[-2]
        pos = torch.arange(S, device=q.device)
        distance = pos[:, None] - pos[None, :]
        scores = q @ k.transpose(-1, -2) / math.sqrt(self.d_head)
        scores = scores + self.rel_bias[:, distance.clamp(min=0)]
        return scores.masked_fill(distance < 0, float("-inf")).softmax(dim=-1)

    def forward(self, x: Tensor, return_pattern: bool = False) -> Tensor | tuple[Tensor, Tensor]:
        """(B, S, d_model) -> the update to the residual stream (and the pattern (B, H, S, S))."""
        B, S, D = x.shape
        pattern = self.pattern(self._heads(self.q_proj(x)), self._heads(self.k_proj(x)))
        mixed = pattern @ self._heads(self.v_proj(x))
        out = self.o_proj(mixed.transpose(1, 2).reshape(B, S, D))
        return (out, pattern) if return_pattern else out


class AttentionBlock(nn.Module):
    """resid + attn(resid)."""

    def __init__(self, d_model: int, n_heads: int, seq_len: int) -> None:
        super().__init__()
        self.attn = CausalSelfAttention(d_model, n_heads, seq_len)

    def forward(self, resid: Tensor) -> Tensor:
        return resid + self.attn(resid)


class InductionTransformer(nn.Module):
    """tokens (B, S <= seq_len) int64 -> next-token logits (B, S, vocab_size)."""

    def __init__(
        self, vocab_size: int, seq_len: int, d_model: int, n_heads: int, n_layers: int
    ) -> None:
        super().__init__()
        self.vocab_size = vocab_size
        self.seq_len = seq_len
        self.embed = nn.Embedding(vocab_size, d_model)
        self.layers = nn.ModuleList(
            AttentionBlock(d_model, n_heads, seq_len) for _ in range(n_layers)
        )
        self.unembed = nn.Linear(d_model, vocab_size, bias=False)

    def _embed(self, tokens: Tensor) -> Tensor:
        if tokens.dim() != 2 or tokens.shape[1] > self.seq_len:
            raise ValueError(
                f"tokens must be (batch, seq <= {self.seq_len}), got {tuple(tokens.shape)}"
            )
        return self.embed(tokens)

    def forward(self, tokens: Tensor) -> Tensor:
        resid = self._embed(tokens)
        for block in self.layers:
            resid = block(resid)
        return self.unembed(resid)

    @torch.no_grad()
    def attention_patterns(self, tokens: Tensor) -> Tensor:
        """(n_layers, B, H, S, S): attention of each query position to each key position."""
        resid = self._embed(tokens)
        patterns = []
        for block in self.layers:
            update, pattern = block.attn(resid, return_pattern=True)
            resid = resid + update
            patterns.append(pattern)
        return torch.stack(patterns)
