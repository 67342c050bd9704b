"""CI-L0: how many subcomponents are causally important per position."""

from torch import Tensor


def ci_l0(
    ci_lower: dict[str, Tensor], threshold: float, item_weights: Tensor | None = None
) -> dict[str, float]:
    """Per module, mean over positions of #{c : g_c > threshold} (strict); `item_weights`
    (batch,) counts each item as that many items."""
    out = {}
    for name, g in ci_lower.items():
        counts = (g > threshold).sum(-1).float()
        if item_weights is not None:
            w = item_weights.reshape(-1, *[1] * (counts.dim() - 1)).expand_as(counts)
            out[name] = ((counts * w).sum() / w.sum()).item()
        else:
            out[name] = counts.mean().item()
    return out


def ever_important(ci_lower: dict[str, Tensor], threshold: float) -> dict[str, Tensor]:
    """Per module, a (C,) bool: was the component important at any position of this batch."""
    return {name: (g > threshold).reshape(-1, g.shape[-1]).any(0) for name, g in ci_lower.items()}


def l0_per_token(ci_lower: dict[str, Tensor], threshold: float) -> Tensor:
    """#{(module, c) : g > threshold} at every position (…), summed over modules."""
    return sum((g > threshold).sum(-1) for g in ci_lower.values())  # type: ignore[return-value]
