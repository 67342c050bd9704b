"""Adversarial reconstruction: masks m = g + (1 − g) s with sources s chosen by projected
sign-gradient ascent on the reconstruction loss (gradients reach only the sources)."""

from __future__ import annotations

import torch
from torch import Tensor

from spd_core.config import _PGD, PGDEval
from spd_core.losses.context import LossContext
from spd_core.losses.reconstruction import Routing, mean_divergence, route
from spd_core.model.masks import ModuleMask

PGDSettings = _PGD | PGDEval


def _init_sources(ctx: LossContext, cfg: PGDSettings) -> dict[str, Tensor]:
    """Sources per module; a shared source starts as rank 0's on every rank."""
    width_extra = 1 if ctx.config.use_delta_component else 0
    sources = {}
    for name, g in ctx.ci.lower.items():
        pos_shape = (
            g.shape[:-1] if cfg.mask_scope == "unique_per_datapoint" else (1,) * (g.dim() - 1)
        )
        shape = (*pos_shape, g.shape[-1] + width_extra)
        if cfg.init == "random":
            src = torch.rand(shape, generator=ctx.generator, device=g.device, dtype=g.dtype)
        elif cfg.init == "ones":
            src = torch.ones(shape, device=g.device, dtype=g.dtype)
        else:
            src = torch.zeros(shape, device=g.device, dtype=g.dtype)
        sources[name] = src
    if ctx.ranks is not None and cfg.mask_scope == "shared_across_batch":
        ctx.ranks.broadcast(list(sources.values()))
    return {name: src.requires_grad_(True) for name, src in sources.items()}


def _masks(ctx: LossContext, sources: dict[str, Tensor]) -> dict[str, ModuleMask]:
    masks = {}
    for name, g in ctx.ci.lower.items():
        src = sources[name]
        C = g.shape[-1]
        delta = src[..., C].expand(g.shape[:-1]) if ctx.config.use_delta_component else None
        masks[name] = ModuleMask(mask=g + (1 - g) * src[..., :C], delta_mask=delta)
    return masks


def with_routings(
    masks: dict[str, ModuleMask], routings: list[dict[str, Tensor | None]]
) -> list[dict[str, ModuleMask]]:
    """One forward per routing: the modules it names, with their masks and its routing."""
    return [{n: ModuleMask(masks[n].mask, masks[n].delta_mask, r[n]) for n in r} for r in routings]


def pgd_forwards(
    ctx: LossContext, cfg: PGDSettings, routing: Routing
) -> list[dict[str, ModuleMask]]:
    """The masked forwards at the sources after `n_steps` of ascent (sources detached; the masks
    keep their graph to the CI functions). Routing is drawn once and kept fixed across steps.
    With several ranks a shared source ascends the gradient averaged over them, so every rank
    holds the source of the global batch."""
    sources = _init_sources(ctx, cfg)
    layouts = route(ctx, _masks(ctx, sources), routing)
    routings = [{n: m.routing for n, m in fwd.items()} for fwd in layouts]
    for _ in range(cfg.n_steps):
        with torch.enable_grad():
            loss = mean_divergence(ctx, with_routings(_masks(ctx, sources), routings))
            grads = torch.autograd.grad(loss, list(sources.values()))
        if ctx.ranks is not None and cfg.mask_scope == "shared_across_batch":
            grads = ctx.ranks.average(list(grads))
        with torch.no_grad():
            for src, grad in zip(sources.values(), grads, strict=True):
                src.add_(cfg.step_size * grad.sign()).clamp_(0.0, 1.0)
    for src in sources.values():
        src.requires_grad_(False)
    return with_routings(_masks(ctx, sources), routings)


def pgd_recon(ctx: LossContext, cfg: PGDSettings, routing: Routing) -> Tensor:
    """The loss at the sources of `pgd_forwards`, with a graph to U, V and the CI functions."""
    return mean_divergence(ctx, pgd_forwards(ctx, cfg, routing))
