"""Loss terms of SPD and their weighted sum (`compute_losses`)."""

from __future__ import annotations

from collections.abc import Callable

from torch import Tensor

from spd_core import config as C
from spd_core.losses.context import LossContext, step_context
from spd_core.losses.faithfulness import faithfulness_loss
from spd_core.losses.hidden_acts import stochastic_hidden_acts_recon
from spd_core.losses.importance_minimality import current_p, importance_minimality_loss
from spd_core.losses.persistent_pgd import PERSISTENT_PGD_LOSSES, persistent_pgd_recon
from spd_core.losses.pgd import pgd_recon
from spd_core.losses.reconstruction import ci_masked_recon, stochastic_recon, unmasked_recon

LOSS_FUNCTIONS: dict[type, Callable[[object, LossContext], Tensor]] = {
    C.FaithfulnessLoss: lambda cfg, ctx: faithfulness_loss(ctx.model.weight_deltas()),
    C.StochasticReconLoss: lambda cfg, ctx: stochastic_recon(ctx, "all"),
    C.StochasticReconLayerwiseLoss: lambda cfg, ctx: stochastic_recon(ctx, "layerwise"),
    C.StochasticReconSubsetLoss: lambda cfg, ctx: stochastic_recon(ctx, cfg.routing),
    C.CIMaskedReconLoss: lambda cfg, ctx: ci_masked_recon(ctx, "all"),
    C.CIMaskedReconLayerwiseLoss: lambda cfg, ctx: ci_masked_recon(ctx, "layerwise"),
    C.CIMaskedReconSubsetLoss: lambda cfg, ctx: ci_masked_recon(ctx, cfg.routing),
    C.UnmaskedReconLoss: lambda cfg, ctx: unmasked_recon(ctx),
    C.ImportanceMinimalityLoss: lambda cfg, ctx: importance_minimality_loss(
        ctx.ci.upper,
        current_p(cfg, ctx.frac),
        cfg.beta,
        cfg.eps,
        ctx.world_size,
        ctx.item_weights,
    ),
    C.PGDReconLoss: lambda cfg, ctx: pgd_recon(ctx, cfg, "all"),
    C.PGDReconLayerwiseLoss: lambda cfg, ctx: pgd_recon(ctx, cfg, "layerwise"),
    C.PGDReconSubsetLoss: lambda cfg, ctx: pgd_recon(ctx, cfg, cfg.routing),
    C.PersistentPGDReconLoss: lambda cfg, ctx: persistent_pgd_recon(ctx, cfg, "all"),
    C.PersistentPGDReconLayerwiseLoss: lambda cfg, ctx: persistent_pgd_recon(ctx, cfg, "layerwise"),
    C.PersistentPGDReconSubsetLoss: lambda cfg, ctx: persistent_pgd_recon(ctx, cfg, cfg.routing),
    C.StochasticHiddenActsReconLoss: lambda cfg, ctx: stochastic_hidden_acts_recon(ctx),
}


def compute_losses(ctx: LossContext) -> tuple[Tensor, dict[str, Tensor]]:
    """Every configured term (computed even with coeff 0) and Σ coeff · term. Persistent-PGD
    terms need the run's sources (`ctx.persistent`); without them (evaluation) they are left out."""
    terms: dict[str, Tensor] = {}
    total: Tensor | float = 0.0
    for cfg in ctx.config.loss_metric_configs:
        if isinstance(cfg, PERSISTENT_PGD_LOSSES) and ctx.persistent is None:
            continue
        value = LOSS_FUNCTIONS[type(cfg)](cfg, ctx)
        terms[cfg.classname] = value
        total = total + cfg.coeff * value
    return total, terms  # type: ignore[return-value]


__all__ = [
    "LossContext",
    "compute_losses",
    "faithfulness_loss",
    "importance_minimality_loss",
    "step_context",
]
