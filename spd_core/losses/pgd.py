"""Adversarial reconstruction: masks m = g + (1 − g) s with sources s chosen by projected
sign-gradient ascent on the reconstruction loss (gradients reach only the sources)."""

from __future__ import annotations

import torch
from torch import Tensor

from spd_core.config import _PGD
from spd_core.losses.context import LossContext
from spd_core.losses.reconstruction import Routing, mean_divergence, route
from spd_core.model.masks import ModuleMask


def _init_sources(ctx: LossContext, cfg: _PGD) -> dict[str, Tensor]:
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
        sources[name] = src.requires_grad_(True)
    return sources


def _masks(ctx: LossContext, sources: dict[str, Tensor]) -> dict[str, ModuleMask]:
    masks = {}
    for name, g in ctx.ci.lower.items():
        src = sources[name]
        C = g.shape[-1]
        delta = src[..., C].expand(g.shape[:-1]) if ctx.config.use_delta_component else None
        masks[name] = ModuleMask(mask=g + (1 - g) * src[..., :C], delta_mask=delta)
    return masks


def pgd_recon(ctx: LossContext, cfg: _PGD, routing: Routing, sync_grads=None) -> Tensor:
    """Run `n_steps` of ascent on the sources, then return the loss at the final sources with a
    graph to U, V and the CI functions. Routing is drawn once and kept fixed across steps.
    `sync_grads` (optional) averages shared-scope source gradients across data-parallel ranks."""
    sources = _init_sources(ctx, cfg)
    layouts = route(ctx, _masks(ctx, sources), routing)
    routings = [{n: m.routing for n, m in fwd.items()} for fwd in layouts]

    def forwards() -> list[dict[str, ModuleMask]]:
        masks = _masks(ctx, sources)
        return [
            {n: ModuleMask(masks[n].mask, masks[n].delta_mask, r[n]) for n in r} for r in routings
        ]

    for _ in range(cfg.n_steps):
        with torch.enable_grad():
            loss = mean_divergence(ctx, forwards())
            grads = torch.autograd.grad(loss, list(sources.values()))
        if sync_grads is not None and cfg.mask_scope == "shared_across_batch":
            grads = sync_grads(grads)
        with torch.no_grad():
            for src, grad in zip(sources.values(), grads, strict=True):
                src.add_(cfg.step_size * grad.sign()).clamp_(0.0, 1.0)
    for src in sources.values():
        src.requires_grad_(False)
    return mean_divergence(ctx, forwards())
