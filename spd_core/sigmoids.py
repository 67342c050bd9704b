"""Hard sigmoids turning raw CI-function outputs into causal importances in [0, 1].

`g_lower` feeds every mask and the L0 metric; `g_upper` feeds only the importance-minimality loss.
"""

from collections.abc import Callable

import torch
from torch import Tensor

LEAK = 0.01


class _ClampedLowerLeaky(torch.autograd.Function):
    """Forward clamp(z, 0, 1); backward passes the gradient on (0, 1], and below 0 only a leaked
    gradient that would raise z (so a dead component can come back), nothing above 1."""

    @staticmethod
    def forward(ctx, z: Tensor) -> Tensor:
        ctx.save_for_backward(z)
        return z.clamp(0.0, 1.0)

    @staticmethod
    def backward(ctx, grad: Tensor) -> Tensor:
        (z,) = ctx.saved_tensors
        inside = (z > 0) & (z <= 1)
        below_wants_up = (z <= 0) & (grad < 0)
        return torch.where(inside, grad, torch.where(below_wants_up, LEAK * grad, 0.0))


def lower_leaky_clamped(z: Tensor) -> Tensor:
    """The reference main-branch lower sigmoid: never negative, one-sided leaky gradient."""
    return _ClampedLowerLeaky.apply(z)


def lower_leaky_value(z: Tensor) -> Tensor:
    """The paper's lower leaky hard sigmoid: 0.01 z below 0, z on [0, 1], 1 above."""
    return torch.where(z <= 0, LEAK * z, z.clamp(max=1.0))


def upper_leaky(z: Tensor) -> Tensor:
    """0 below 0, z on [0, 1], 1 + 0.01 (z - 1) above 1."""
    return torch.where(z > 1, 1 + LEAK * (z - 1), z.clamp(min=0.0))


SigmoidPair = tuple[Callable[[Tensor], Tensor], Callable[[Tensor], Tensor]]

SIGMOIDS: dict[str, SigmoidPair] = {
    "leaky_hard": (lower_leaky_clamped, upper_leaky),
    "leaky_hard_paper": (lower_leaky_value, upper_leaky),
    "hard": (lambda z: z.clamp(0, 1), lambda z: z.clamp(0, 1)),
    "normal": (torch.sigmoid, torch.sigmoid),
}
