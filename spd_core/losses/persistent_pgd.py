"""Persistent PGD: adversarial mask sources kept across training steps.

Per-step PGD starts its sources afresh every step; persistent sources instead live in the
training state (and its checkpoints) and take one ascent step per training step, by the sign of
their gradient or by Adam, so many steps of adversarial search are spread over training. Masks
are m = g + (1 − g) s[..., :C] with the delta mask s[..., C] (s = sigmoid(raw) with the sigmoid
parameterisation, else raw clamped to [0, 1]).

Scopes (leading dims of a source; `positions` = (batch, …) of one worker's training batch):
single_source (1, …, 1), broadcast_across_batch (1, …), repeat_across_batch (n, …) with item i
using source i mod n, per_batch_per_position (batch, …). The update follows the gradient of the
global batch's loss: shared scopes average it over the ranks (all ranks keep equal sources),
per-position sources, each rank's own, take their rank's gradient / world size.
"""

from __future__ import annotations

import zlib
from dataclasses import dataclass, field
from typing import TYPE_CHECKING, Any

import torch
from torch import Tensor

from spd_core.config import (
    AdamPGDOptimizer,
    Config,
    ConfigError,
    PerBatchPerPositionScope,
    PersistentPGDReconLayerwiseLoss,
    PersistentPGDReconLoss,
    PersistentPGDReconSubsetLoss,
    RepeatAcrossBatchScope,
    SingleSourceScope,
)
from spd_core.losses.context import LossContext
from spd_core.losses.pgd import with_routings
from spd_core.losses.reconstruction import Routing, mean_divergence, route
from spd_core.model.masks import ModuleMask
from spd_core.train.schedule import scheduled_value
from spd_core.train.seeding import generator

if TYPE_CHECKING:
    from spd_core.train.parallel.collectives import RankGroup

PersistentPGD = (
    PersistentPGDReconLoss | PersistentPGDReconLayerwiseLoss | PersistentPGDReconSubsetLoss
)
PERSISTENT_PGD_LOSSES = (
    PersistentPGDReconLoss,
    PersistentPGDReconLayerwiseLoss,
    PersistentPGDReconSubsetLoss,
)


@dataclass
class PersistentSources:
    """One persistent-PGD term's adversary: raw sources per module (leaves that collect the
    term's gradient) and, for Adam, its moments and update count."""

    values: dict[str, Tensor]
    exp_avg: dict[str, Tensor] = field(default_factory=dict)
    exp_avg_sq: dict[str, Tensor] = field(default_factory=dict)
    n_updates: int = 0

    def state_dict(self) -> dict[str, Any]:
        """Copies of every tensor and the update count (what a checkpoint holds)."""

        def copy(d: dict[str, Tensor]) -> dict[str, Tensor]:
            return {k: v.detach().clone() for k, v in d.items()}

        return {
            "values": copy(self.values),
            "exp_avg": copy(self.exp_avg),
            "exp_avg_sq": copy(self.exp_avg_sq),
            "n_updates": self.n_updates,
        }

    @classmethod
    def from_state_dict(cls, state: dict[str, Any], device: torch.device) -> PersistentSources:
        def place(d: dict[str, Tensor]) -> dict[str, Tensor]:
            return {k: v.to(device) for k, v in d.items()}

        values = {k: v.requires_grad_(True) for k, v in place(state["values"]).items()}
        return cls(values, place(state["exp_avg"]), place(state["exp_avg_sq"]), state["n_updates"])


@dataclass
class PersistentPGDRun:
    """What persistent-PGD terms need at one step: the run's sources by term (created at the
    first step, from this rank's batch shape), the step and this rank's index."""

    adversaries: dict[str, PersistentSources]
    step: int
    rank: int = 0


def persistent_pgd_recon(ctx: LossContext, cfg: PersistentPGD, routing: Routing) -> Tensor:
    """Run `n_warmup_steps` extra ascents on this batch, then return the reconstruction loss at
    the current sources, with a graph to the sources (whose gradient `ascend_after_backward`
    uses) and to U, V and the CI functions. Routing is drawn once per step."""
    run = ctx.persistent
    assert run is not None, "persistent-PGD terms need the run's sources (ctx.persistent)"
    adv = _sources_for(ctx, cfg, run)
    layouts = route(ctx, _masks(ctx, cfg, adv), routing)
    routings = [{n: m.routing for n, m in fwd.items()} for fwd in layouts]
    for _ in range(cfg.n_warmup_steps):
        with torch.enable_grad():
            loss = mean_divergence(ctx, with_routings(_masks(ctx, cfg, adv), routings))
            grads = torch.autograd.grad(loss, list(adv.values.values()))
        by_module = dict(zip(adv.values, grads, strict=True))
        _ascend(adv, cfg, _global_gradient(ctx.ranks, cfg, by_module), _lr(ctx.config, cfg, run))
    return mean_divergence(ctx, with_routings(_masks(ctx, cfg, adv), routings))


def ascend_after_backward(
    run: PersistentPGDRun, config: Config, ranks: RankGroup | None = None
) -> None:
    """One ascent of every persistent term's sources, by the gradient of its own term that the
    backward of Σ coeff · term left on them (divided by coeff); the gradients are then cleared."""
    for cfg in config.loss_metric_configs:
        if not isinstance(cfg, PERSISTENT_PGD_LOSSES):
            continue
        adv = run.adversaries[cfg.classname]
        grads = {}
        for name, src in adv.values.items():
            grads[name] = src.grad / cfg.coeff if src.grad is not None else torch.zeros_like(src)
            src.grad = None
        _ascend(adv, cfg, _global_gradient(ranks, cfg, grads), _lr(config, cfg, run))


def check_scopes_fit(config: Config, local_batch: int) -> None:
    """Refuse, before any work, a repeat_across_batch scope whose n_sources does not divide
    each worker's batch."""
    for cfg in config.loss_metric_configs:
        scope = cfg.scope if isinstance(cfg, PERSISTENT_PGD_LOSSES) else None
        if isinstance(scope, RepeatAcrossBatchScope) and local_batch % scope.n_sources:
            raise ConfigError(
                f"{cfg.classname}.scope.n_sources {scope.n_sources} does not divide each "
                f"worker's batch of {local_batch} items; choose n_sources dividing "
                "batch_size / workers"
            )


def _lr(config: Config, cfg: PersistentPGD, run: PersistentPGDRun) -> float:
    return scheduled_value(run.step, config.steps, cfg.optimizer.lr_schedule)


def _global_gradient(
    ranks: RankGroup | None, cfg: PersistentPGD, grads: dict[str, Tensor]
) -> dict[str, Tensor]:
    """The gradient of the global batch's mean loss from this rank's: shared sources average
    over the ranks, a rank's own per-position sources scale by 1 / world size."""
    if ranks is None:
        return grads
    if isinstance(cfg.scope, PerBatchPerPositionScope):
        return {k: g / ranks.world_size for k, g in grads.items()}
    return dict(zip(grads, ranks.average(list(grads.values())), strict=True))


@torch.no_grad()
def _ascend(
    adv: PersistentSources, cfg: PersistentPGD, grads: dict[str, Tensor], lr: float
) -> None:
    """s ← s + lr · sign(grad) or s ← s + lr · m̂ / (√v̂ + eps) (Adam); clamp to [0, 1] unless
    sigmoid-parameterised."""
    opt = cfg.optimizer
    adv.n_updates += 1
    for name, src in adv.values.items():
        grad = grads[name]
        if isinstance(opt, AdamPGDOptimizer):
            m = adv.exp_avg[name].mul_(opt.beta1).add_(grad, alpha=1 - opt.beta1)
            v = adv.exp_avg_sq[name].mul_(opt.beta2).addcmul_(grad, grad, value=1 - opt.beta2)
            m_hat = m / (1 - opt.beta1**adv.n_updates)
            v_hat = v / (1 - opt.beta2**adv.n_updates)
            src.add_(lr * m_hat / (v_hat.sqrt() + opt.eps))
        else:
            src.add_(lr * grad.sign())
        if not cfg.use_sigmoid_parameterization:
            src.clamp_(0.0, 1.0)


def _sources_for(ctx: LossContext, cfg: PersistentPGD, run: PersistentPGDRun) -> PersistentSources:
    """The term's sources, created at the first step; refuses a batch they do not fit."""
    g = next(iter(ctx.ci.lower.values()))
    n_items = g.shape[0] if ctx.item_weights is None else int(ctx.item_weights.sum())
    positions = (n_items, *g.shape[1:-1])
    if cfg.classname not in run.adversaries:
        run.adversaries[cfg.classname] = _new_sources(ctx, cfg, positions, run.rank)
    adv = run.adversaries[cfg.classname]
    _check_fits(cfg, next(iter(adv.values.values())), positions)
    return adv


def _scope_dims(cfg: PersistentPGD, positions: tuple[int, ...]) -> tuple[int, ...]:
    scope = cfg.scope
    if isinstance(scope, SingleSourceScope):
        return (1,) * len(positions)
    if isinstance(scope, RepeatAcrossBatchScope):
        return (scope.n_sources, *positions[1:])
    if isinstance(scope, PerBatchPerPositionScope):
        return positions
    return (1, *positions[1:])  # broadcast_across_batch


def _check_fits(cfg: PersistentPGD, source: Tensor, positions: tuple[int, ...]) -> None:
    expected = _scope_dims(cfg, positions)
    n_items = positions[0]
    fits = tuple(source.shape[:-1]) == expected
    if isinstance(cfg.scope, RepeatAcrossBatchScope) and n_items % cfg.scope.n_sources:
        fits = False
    if not fits:
        raise ConfigError(
            f"{cfg.classname}: scope {cfg.scope.type} holds sources for positions "
            f"{tuple(source.shape[:-1])} but this batch has positions {positions}; persistent "
            "sources are sized at the first step for each worker's training batch, so every "
            "training batch must have that shape (batch_size / workers, and the same length)"
        )


def _new_sources(
    ctx: LossContext, cfg: PersistentPGD, positions: tuple[int, ...], rank: int
) -> PersistentSources:
    """Uniform [0, 1) sources (standard normal when sigmoid-parameterised) from a stream that is
    the same on every rank: shared sources start equal, and a rank's per-position sources are
    its slice of those one process would draw for the global batch."""
    device = next(iter(ctx.ci.lower.values())).device
    gen = generator(ctx.config.seed, "persistent_pgd", device)
    gen.manual_seed(gen.initial_seed() * 1_000_003 + zlib.crc32(cfg.classname.encode()))
    draw = torch.randn if cfg.use_sigmoid_parameterization else torch.rand
    extra = 1 if ctx.config.use_delta_component else 0
    per_position = isinstance(cfg.scope, PerBatchPerPositionScope)
    dims = _scope_dims(cfg, positions)
    if per_position:
        dims = (positions[0] * ctx.world_size, *positions[1:])
    values = {}
    for name, g in ctx.ci.lower.items():
        src = draw((*dims, g.shape[-1] + extra), generator=gen, device=device)
        if per_position:
            src = src[rank * positions[0] : (rank + 1) * positions[0]].clone()
        values[name] = src.requires_grad_(True)
    adv = PersistentSources(values)
    if isinstance(cfg.optimizer, AdamPGDOptimizer):
        adv.exp_avg = {k: torch.zeros_like(v) for k, v in values.items()}
        adv.exp_avg_sq = {k: torch.zeros_like(v) for k, v in values.items()}
    return adv


def _per_row(ctx: LossContext, cfg: PersistentPGD, source: Tensor) -> Tensor:
    """The source each row of the step uses (leading dims broadcastable to the rows')."""
    effective = torch.sigmoid(source) if cfg.use_sigmoid_parameterization else source
    scope = cfg.scope
    if isinstance(scope, PerBatchPerPositionScope):
        return effective if ctx.rows is None else effective[ctx.rows]
    if isinstance(scope, RepeatAcrossBatchScope):
        n_rows = next(iter(ctx.ci.lower.values())).shape[0]
        rows = ctx.rows if ctx.rows is not None else torch.arange(n_rows, device=source.device)
        return effective[rows % scope.n_sources]
    return effective


def _masks(ctx: LossContext, cfg: PersistentPGD, adv: PersistentSources) -> dict[str, ModuleMask]:
    masks = {}
    for name, g in ctx.ci.lower.items():
        s = _per_row(ctx, cfg, adv.values[name])
        C = g.shape[-1]
        delta = s[..., C].expand(g.shape[:-1]) if ctx.config.use_delta_component else None
        masks[name] = ModuleMask(mask=g + (1 - g) * s[..., :C], delta_mask=delta)
    return masks
