"""Language-model metrics: CE and KL of the model under different masks (spec section 6)."""

from __future__ import annotations

import torch
from torch import Tensor
from torch.nn import functional as F

from spd_core.losses.divergence import divergence_sum
from spd_core.model.component_model import CausalImportances, ComponentModel, StepActivations
from spd_core.model.masks import ModuleMask, stochastic_masks


def next_token_ce(logits: Tensor, tokens: Tensor) -> Tensor:
    """Mean CE of predicting token t+1 from position t; position 0 of each sequence is ignored
    as a label so shifted predictions never cross sequence boundaries."""
    labels = tokens.clone()
    labels[..., 0] = -100
    flat_logits = logits.reshape(-1, logits.shape[-1]).float()
    flat_labels = labels.reshape(-1)
    return F.cross_entropy(flat_logits[:-1], flat_labels[1:], ignore_index=-100)


def lm_mask_variants(
    ci: CausalImportances, rounding_threshold: float, generator: torch.Generator | None
) -> dict[str, dict[str, ModuleMask]]:
    """The named mask sets: ci, unmasked, stoch (+delta), random, rounded, zero."""
    lower = ci.lower
    return {
        "ci": {n: ModuleMask(mask=g) for n, g in lower.items()},
        "unmasked": {n: ModuleMask(mask=torch.ones_like(g)) for n, g in lower.items()},
        "stoch": stochastic_masks(lower, "continuous", True, generator),
        "random": {
            n: ModuleMask(mask=torch.rand(g.shape, generator=generator, device=g.device))
            for n, g in lower.items()
        },
        "rounded": {n: ModuleMask(mask=(g > rounding_threshold).float()) for n, g in lower.items()},
        "zero": {n: ModuleMask(mask=torch.zeros_like(g)) for n, g in lower.items()},
    }


@torch.no_grad()
def ce_kl_values(
    model: ComponentModel,
    acts: StepActivations,
    ci: CausalImportances,
    rounding_threshold: float = 0.0,
    generator: torch.Generator | None = None,
) -> dict[str, float]:
    """ce_target, and kl_<mask>, ce_<mask> for every mask set, on one batch of token ids."""
    out: dict[str, float] = {"ce_target": next_token_ce(acts.clean.output, acts.clean.x).item()}
    for name, masks in lm_mask_variants(ci, rounding_threshold, generator).items():
        out.update(masked_ce_kl(model, acts, masks, name))
    return out


@torch.no_grad()
def masked_ce_kl(
    model: ComponentModel, acts: StepActivations, masks: dict[str, ModuleMask], name: str
) -> dict[str, float]:
    """kl_<name> (KL(target ‖ masked), mean over positions) and ce_<name> under `masks`."""
    logits = model.masked_forward(acts, masks)
    kl_sum, n = divergence_sum(logits, acts.clean.output, "kl")
    return {
        f"kl_{name}": (kl_sum / n).item(),
        f"ce_{name}": next_token_ce(logits, acts.clean.x).item(),
    }


def with_ce_recovery(values: dict[str, float]) -> dict[str, float]:
    """Adds ce_difference_<mask> = CE − CE_target, ce_unrecovered_<mask> =
    (CE − CE_target) / (CE_zero − CE_target) (0: as good as the target, 1: as bad as ablating all)
    and, likewise for the KL to the target, kl_unrecovered_<mask> = KL / KL_zero."""
    out = dict(values)
    ce_target = values["ce_target"]
    denom = values["ce_zero"] - ce_target
    kl_zero = values.get("kl_zero", 0.0)
    for key, value in values.items():
        if key.startswith("ce_") and key != "ce_target":
            name = key.removeprefix("ce_")
            out[f"ce_difference_{name}"] = value - ce_target
            out[f"ce_unrecovered_{name}"] = (value - ce_target) / denom if denom else float("nan")
        if key.startswith("kl_") and "kl_zero" in values:
            out[f"kl_unrecovered_{key.removeprefix('kl_')}"] = (
                value / kl_zero if kl_zero else float("nan")
            )
    return out


class CEKLMetric:
    """CE/KL under masks averaged over batches; CE recovery computed from the averaged CEs."""

    def __init__(self) -> None:
        self.sums: dict[str, float] = {}
        self.count = 0

    def update(self, values: dict[str, float]) -> None:
        for key, value in values.items():
            self.sums[key] = self.sums.get(key, 0.0) + value
        self.count += 1

    def compute(self) -> dict[str, float]:
        return with_ce_recovery({k: v / self.count for k, v in self.sums.items()})
