"""Masks for masked forwards: stochastic masks from causal importances, and layer routing."""

from __future__ import annotations

from dataclasses import dataclass
from typing import Literal

import torch
from torch import Tensor

Sampling = Literal["continuous", "binomial"]


@dataclass
class ModuleMask:
    """How one module runs in a masked forward.

    `mask` (…, C) or (C,) or None (= all ones); `delta_mask` (…) or None (no delta term);
    `routing` (…) bool or None (= every position uses the components).
    """

    mask: Tensor | None = None
    delta_mask: Tensor | None = None
    routing: Tensor | None = None


def stochastic_masks(
    ci: dict[str, Tensor], sampling: Sampling, use_delta: bool, gen: torch.Generator | None
) -> dict[str, ModuleMask]:
    """m = g + (1 − g) r with r ~ U[0,1) (continuous) or r ∈ {0,1} (binomial), plus a uniform
    delta mask per position when `use_delta`. Gradients flow into g, never into r."""
    out = {}
    for name, g in ci.items():
        r = torch.rand(g.shape, generator=gen, device=g.device, dtype=g.dtype)
        if sampling == "binomial":
            r = (r < 0.5).to(g.dtype)
        delta = (
            torch.rand(g.shape[:-1], generator=gen, device=g.device, dtype=g.dtype)
            if use_delta
            else None
        )
        out[name] = ModuleMask(mask=g + (1 - g) * r, delta_mask=delta)
    return out


def uniform_k_subset_routing(
    names: list[str], pos_shape: torch.Size, gen: torch.Generator | None, device: torch.device
) -> dict[str, Tensor]:
    """Per position draw k ~ U{1..L} and route exactly k uniformly chosen layers."""
    n_layers = len(names)
    k = torch.randint(1, n_layers + 1, pos_shape, generator=gen, device=device)
    scores = torch.rand((*pos_shape, n_layers), generator=gen, device=device)
    ranks = scores.argsort(-1).argsort(-1)
    routed = ranks < k.unsqueeze(-1)
    return {name: routed[..., i] for i, name in enumerate(names)}


def static_probability_routing(
    names: list[str],
    pos_shape: torch.Size,
    p: float,
    gen: torch.Generator | None,
    device: torch.device,
) -> dict[str, Tensor]:
    """Route each (layer, position) independently with probability p (a position may route no
    layer: it then reproduces the target there)."""
    routed = torch.rand((*pos_shape, len(names)), generator=gen, device=device) < p
    return {name: routed[..., i] for i, name in enumerate(names)}


def with_routing(masks: dict[str, ModuleMask], routing: dict[str, Tensor]) -> dict[str, ModuleMask]:
    """Attach per-position routing to masks (modules missing from `routing` stay fully routed)."""
    return {
        name: ModuleMask(m.mask, m.delta_mask, routing.get(name, m.routing))
        for name, m in masks.items()
    }
