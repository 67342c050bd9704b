"""Faithfulness: mean squared error between target weights and component weights."""

from torch import Tensor


def faithfulness_loss(deltas: dict[str, Tensor]) -> Tensor:
    """Σ_l ‖Δ_l‖²_F / Σ_l numel(W_l)."""
    total = sum((d**2).sum() for d in deltas.values())
    return total / sum(d.numel() for d in deltas.values())
