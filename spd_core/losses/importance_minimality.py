"""Importance minimality: push causal importances (upper sigmoid) towards zero."""

import math

from torch import Tensor

from spd_core.config import ImportanceMinimalityLoss
from spd_core.train.schedule import annealed_p


def importance_minimality_loss(
    ci_upper: dict[str, Tensor],
    p: float,
    beta: float = 0.0,
    eps: float = 1e-12,
    world_size: int = 1,
    item_weights: Tensor | None = None,
) -> Tensor:
    """Σ_layers Σ_c [μ_c + β μ_c log₂(1 + s_c · world_size)], s_c = Σ_pos (g + eps)^p,
    μ_c = s_c / n_positions. Not divided by the number of layers or components.
    `item_weights` (batch,): each item counts as that many items (in s_c and n_positions)."""
    total: Tensor | float = 0.0
    for g in ci_upper.values():
        powered = (g + eps) ** p
        n_pos = g.numel() // g.shape[-1]
        if item_weights is not None:
            powered = powered * item_weights.reshape(-1, *[1] * (g.dim() - 1))
            n_pos = n_pos // g.shape[0] * float(item_weights.sum())
        s = powered.reshape(-1, g.shape[-1]).sum(0)
        mu = s / n_pos
        term = mu.sum()
        if beta:
            term = term + beta * (mu * (1 + s * world_size).log() / math.log(2)).sum()
        total = total + term
    return total  # type: ignore[return-value]


def current_p(cfg: ImportanceMinimalityLoss, frac: float) -> float:
    return annealed_p(
        frac, cfg.pnorm, cfg.p_anneal_final_p, cfg.p_anneal_start_frac, cfg.p_anneal_end_frac
    )
