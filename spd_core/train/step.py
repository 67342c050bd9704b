"""One SPD optimisation step as plain functions, shared by one process and by Ray workers."""

from __future__ import annotations

import contextlib
from dataclasses import dataclass

import torch
from torch import Tensor, nn

from spd_core.config import Config
from spd_core.losses import compute_losses, faithfulness_loss, step_context
from spd_core.losses.persistent_pgd import PersistentPGDRun
from spd_core.model.component_model import CausalImportances, ComponentModel
from spd_core.model.tied_components import ties_hold
from spd_core.train.parallel.collectives import RankGroup
from spd_core.train.parallel.tied_shards import TiedShardsAdamW, sharded_tie_pairs


@dataclass
class StepResult:
    total: Tensor
    terms: dict[str, Tensor]
    ci: CausalImportances  # of the rows the step kept; each stands for item_weights[row] items
    item_weights: Tensor | None


def autocast_context(config: Config, device: torch.device) -> contextlib.AbstractContextManager:
    if not config.autocast_bf16:
        return contextlib.nullcontext()
    return torch.autocast(device_type=device.type, dtype=torch.bfloat16)


def step_loss(
    model: ComponentModel,
    batch: Tensor,
    step: int,
    config: Config,
    generator: torch.Generator | None,
    world_size: int = 1,
    ranks: RankGroup | None = None,
    persistent: PersistentPGDRun | None = None,
) -> StepResult:
    """Clean pass → causal importances → every configured loss term, for `step` of `config.steps`.
    `ranks`: the data-parallel ranks (several); `persistent`: the run's persistent-PGD sources."""
    with autocast_context(config, batch.device):
        ctx = step_context(
            model, batch, config, step / config.steps, generator, world_size, ranks, persistent
        )
        total, terms = compute_losses(ctx)
    return StepResult(total, terms, ctx.ci, ctx.item_weights)


def clip_gradients(model: ComponentModel, config: Config) -> None:
    """Clip component and CI-function gradients separately when configured."""
    if config.grad_clip_norm_components is not None:
        torch.nn.utils.clip_grad_norm_(
            model.component_parameters(), config.grad_clip_norm_components
        )
    if config.grad_clip_norm_ci_fns is not None:
        torch.nn.utils.clip_grad_norm_(model.ci_parameters(), config.grad_clip_norm_ci_fns)


def make_optimizer(model: ComponentModel, lr: float) -> torch.optim.Optimizer:
    """Adam (AdamW with weight decay 0) over every U, V and CI-function parameter."""
    ties = model.tied_components
    sharded = bool(sharded_tie_pairs(model))  # fsdp: the tie is kept by TiedShardsAdamW
    if ties and not sharded and not ties_hold(model.components_by_name(), ties):
        raise RuntimeError(
            f"tied components {ties} no longer share storage: something replaced the factors' "
            "storage after the model was built"
        )
    return adamw(model, model.component_parameters() + model.ci_parameters(), lr, 0.0)


def adamw(
    model: ComponentModel, params: list[nn.Parameter], lr: float, weight_decay: float
) -> torch.optim.Optimizer:
    """AdamW over `params`, with the factors of tied-component targets in a param group of their
    own. Each target factor shares storage with a source factor; a foreach or fused Adam (torch's
    default on a GPU) updates a group's tensors together in one kernel, where two aliased updates
    can race and one be lost. Groups are stepped one after another, so both always land. Under
    fsdp the tied factors are shards of their own, kept equal by `TiedShardsAdamW`."""
    components = model.components_by_name()
    aliased = {id(p) for _, tgt in model.tied_components for p in components[tgt].parameters()}
    groups = [
        [p for p in params if id(p) not in aliased],
        [p for p in params if id(p) in aliased],
    ]
    pairs = sharded_tie_pairs(model)
    if pairs:
        groups_ = [{"params": g} for g in groups]
        return TiedShardsAdamW(groups_, pairs, lr=lr, weight_decay=weight_decay)
    return torch.optim.AdamW([{"params": g} for g in groups if g], lr=lr, weight_decay=weight_decay)


def faithfulness_warmup(model: ComponentModel, config: Config) -> float:
    """Fit U, V to the target weights alone (no data) before the main loop; returns the final loss."""
    if config.faithfulness_warmup_steps == 0:
        return float("nan")
    opt = adamw(
        model,
        model.component_parameters(),
        config.faithfulness_warmup_lr,
        config.faithfulness_warmup_weight_decay,
    )
    loss = torch.tensor(float("nan"))
    for _ in range(config.faithfulness_warmup_steps):
        opt.zero_grad(set_to_none=True)
        loss = faithfulness_loss(model.weight_deltas())
        loss.backward()
        opt.step()
    return loss.item()
