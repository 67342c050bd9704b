"""Output divergences D(pred, target) as (sum, count) so several forwards average correctly."""

from typing import Literal

from torch import Tensor
from torch.nn import functional as F

OutputLossType = Literal["mse", "kl"]


def divergence_sum(pred: Tensor, target: Tensor, loss_type: OutputLossType) -> tuple[Tensor, int]:
    """mse: Σ over every element, count = numel. kl: Σ_pos KL(softmax(target) ‖ softmax(pred)),
    count = number of positions (all but the last dim)."""
    if loss_type == "mse":
        return F.mse_loss(pred.float(), target.float(), reduction="sum"), pred.numel()
    log_q = F.log_softmax(pred.float(), dim=-1)
    log_p = F.log_softmax(target.float(), dim=-1)
    kl = (log_p.exp() * (log_p - log_q)).sum()
    return kl, pred.numel() // pred.shape[-1]


def per_position_divergence(pred: Tensor, target: Tensor, loss_type: OutputLossType) -> Tensor:
    """(N, positions): the divergence at each position of sequence outputs (N, positions, ...)
    (mse: mean over the remaining elements); its mean over positions is
    `per_example_divergence`."""
    if loss_type == "mse":
        return ((pred.float() - target.float()) ** 2).flatten(2).mean(-1)
    log_q = F.log_softmax(pred.float(), dim=-1)
    log_p = F.log_softmax(target.float(), dim=-1)
    return (log_p.exp() * (log_p - log_q)).sum(-1).flatten(1)


def per_example_divergence(pred: Tensor, target: Tensor, loss_type: OutputLossType) -> Tensor:
    """Divergence per leading index (mean over the remaining elements / positions)."""
    if loss_type == "mse":
        return ((pred.float() - target.float()) ** 2).flatten(1).mean(-1)
    log_q = F.log_softmax(pred.float(), dim=-1)
    log_p = F.log_softmax(target.float(), dim=-1)
    kl = (log_p.exp() * (log_p - log_q)).sum(-1)
    return kl.flatten(1).mean(-1) if kl.dim() > 1 else kl
