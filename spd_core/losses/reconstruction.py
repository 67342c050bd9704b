"""Reconstruction losses: outputs of masked forwards against the clean target output.

Each loss averages D over every forward it makes (S samples × layers for layerwise losses).
"""

from __future__ import annotations

from typing import Literal

from torch import Tensor

from spd_core.config import StaticProbabilityRouting, UniformKSubsetRouting
from spd_core.losses.context import LossContext
from spd_core.losses.divergence import divergence_sum
from spd_core.model.masks import (
    ModuleMask,
    static_probability_routing,
    stochastic_masks,
    uniform_k_subset_routing,
    with_routing,
)

# every module at once, one module per forward, or a subset drawn per position
Routing = Literal["all", "layerwise"] | UniformKSubsetRouting | StaticProbabilityRouting


def mean_divergence(ctx: LossContext, forwards: list[dict[str, ModuleMask]]) -> Tensor:
    """Σ D over the masked forwards / total count (over the whole batch: × `ctx.row_fraction`)."""
    total: Tensor | float = 0.0
    count = 0
    target = ctx.acts.clean.output
    for masks in forwards:
        s, n = divergence_sum(
            ctx.model.masked_forward(ctx.acts, masks), target, ctx.config.output_loss_type
        )
        total, count = total + s, count + n
    return total / count * ctx.row_fraction  # type: ignore[operator]


def route(
    ctx: LossContext, masks: dict[str, ModuleMask], routing: Routing
) -> list[dict[str, ModuleMask]]:
    """Turn one joint mask draw into the forwards a routing mode makes."""
    if routing == "all":
        return [masks]
    if routing == "layerwise":
        return [{name: m} for name, m in masks.items()]
    names = list(masks)
    g = next(iter(ctx.ci.lower.values()))
    if isinstance(routing, StaticProbabilityRouting):
        subset = static_probability_routing(names, g.shape[:-1], routing.p, ctx.generator, g.device)
    else:
        subset = uniform_k_subset_routing(names, g.shape[:-1], ctx.generator, g.device)
    return [with_routing(masks, subset)]


def stochastic_recon(ctx: LossContext, routing: Routing) -> Tensor:
    """Masks m = g + (1 − g) r (+ delta), S independent draws."""
    cfg = ctx.config
    forwards = []
    for _ in range(cfg.n_mask_samples):
        masks = stochastic_masks(ctx.ci.lower, cfg.sampling, cfg.use_delta_component, ctx.generator)
        forwards += route(ctx, masks, routing)
    return mean_divergence(ctx, forwards)


def ci_masked_recon(ctx: LossContext, routing: Routing) -> Tensor:
    """Deterministic masks m = g_lower, no delta."""
    masks = {name: ModuleMask(mask=g) for name, g in ctx.ci.lower.items()}
    return mean_divergence(ctx, route(ctx, masks, routing))


def unmasked_recon(ctx: LossContext) -> Tensor:
    """All components kept (m = 1), no delta: checks that the components sum to the target."""
    return mean_divergence(ctx, [{name: ModuleMask() for name in ctx.ci.lower}])
