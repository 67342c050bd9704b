"""Hidden-activation reconstruction: how far every decomposed module's input drifts from the
clean pass's when all modules run under stochastic masks (spec section 4, item 9).

L = Σ_samples Σ_modules ‖x_masked − x_clean‖² / (their total element count). Modules whose input
is token ids (embeddings) are left out: their input never changes.
"""

from __future__ import annotations

from collections.abc import Callable

import torch
from torch import Tensor, nn

from spd_core.losses.context import LossContext
from spd_core.model.component_model import ComponentModel, StepActivations
from spd_core.model.masks import ModuleMask, stochastic_masks


def masked_module_inputs(
    model: ComponentModel, acts: StepActivations, masks: dict[str, ModuleMask]
) -> dict[str, Tensor]:
    """Every decomposed module's input in the masked forward of `masks`; a module the forward
    did not run (a target resuming past it) had its clean input."""
    captured: dict[str, Tensor] = {}
    modules = dict(model.target.named_modules())

    def capture(name: str) -> Callable:
        def hook(module: nn.Module, args: tuple) -> None:
            captured[name] = args[0]

        return hook

    handles = [modules[n].register_forward_pre_hook(capture(n)) for n in model.module_names]
    try:
        model.masked_forward(acts, masks)
    finally:
        for h in handles:
            h.remove()
    return {n: captured.get(n, acts.clean.inputs[n]) for n in model.module_names}


def hidden_acts_errors(ctx: LossContext) -> dict[str, tuple[Tensor, int]]:
    """Per module (floating-point inputs only): (Σ squared error, element count) over
    `n_mask_samples` stochastic draws (+ delta), counts over the whole batch."""
    cfg = ctx.config
    clean = ctx.acts.clean.inputs
    names = [n for n in ctx.model.module_names if clean[n].is_floating_point()]
    out: dict[str, tuple[Tensor, int]] = {}
    for _ in range(cfg.n_mask_samples):
        masks = stochastic_masks(ctx.ci.lower, cfg.sampling, cfg.use_delta_component, ctx.generator)
        inputs = masked_module_inputs(ctx.model, ctx.acts, masks)
        for n in names:
            sq = (inputs[n].float() - clean[n].float()).pow(2).sum()
            count = round(clean[n].numel() / ctx.row_fraction)
            prev_sq, prev_count = out.get(n, (torch.zeros((), device=sq.device), 0))
            out[n] = (prev_sq + sq, prev_count + count)
    return out


def stochastic_hidden_acts_recon(ctx: LossContext) -> Tensor:
    """Σ squared input errors over every module and sample / their total element count."""
    errors = hidden_acts_errors(ctx)
    if not errors:
        raise ValueError(
            "StochasticHiddenActsReconLoss: no decomposed module has a floating-point input "
            f"(modules: {ctx.model.module_names})"
        )
    total = sum(sq for sq, _ in errors.values())
    return total / sum(n for _, n in errors.values())  # type: ignore[return-value]
