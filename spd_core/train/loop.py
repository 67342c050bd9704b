"""The optimisation loop shared by a single process and by every distributed worker.

Data come from one rank-independent stream: each step draws the global batch and rank r keeps
its contiguous slice, so N workers see exactly the batches one process sees. Mask noise comes
from a per-rank stream (spec section 9).
"""

from __future__ import annotations

from collections.abc import Callable
from dataclasses import dataclass, field

import torch
import torch.distributed as dist

from spd_core.config import Config, ConfigError
from spd_core.eval.evaluation import probe_metrics
from spd_core.eval.metrics.ci_l0 import ci_l0, with_l0_groups
from spd_core.losses.persistent_pgd import (
    PersistentPGDRun,
    PersistentSources,
    ascend_after_backward,
    check_scopes_fit,
)
from spd_core.model.component_model import ComponentModel
from spd_core.task import DecompositionTask
from spd_core.train.parallel.collectives import RankGroup
from spd_core.train.schedule import scheduled_value
from spd_core.train.seeding import generator
from spd_core.train.step import clip_gradients, step_loss


@dataclass
class LogRecord:
    """Loss terms and L0 (per module, per `eval.l0_groups` group and total) at one logged step
    (averaged over ranks), the LR, and at the first logged step from each multiple of
    `eval_freq` on, the data-free evaluation figures (and, with `eval.during_training`, the whole
    evaluation under `eval/`)."""

    step: int
    terms: dict[str, float]
    l0: dict[str, float]
    lr: float
    probes: dict[str, float] = field(default_factory=dict)  # `probe_metrics`, when due


@dataclass
class TrainingState:
    """Everything that changes during a run: enough to resume it exactly. `adversaries`: the
    persistent-PGD sources by loss term (created at the first step)."""

    model: ComponentModel
    optimizer: torch.optim.Optimizer
    data_gen: torch.Generator
    mask_gen: torch.Generator
    step: int = 0
    restarts: int = 0
    extra: dict[str, object] = field(default_factory=dict)
    adversaries: dict[str, PersistentSources] = field(default_factory=dict)


def new_generators(
    config: Config, device: torch.device, rank: int = 0, world_size: int = 1
) -> tuple[torch.Generator, torch.Generator]:
    """(data, masks): data identical on every rank, masks distinct per rank."""
    data = generator(config.seed, "data", device)
    masks = generator(config.seed, "masks", device, rank, world_size)
    return data, masks


def local_batch_size(config: Config, world_size: int) -> int:
    """Rows of each global batch one rank trains on; the batch must split evenly (and fit the
    persistent-PGD scopes)."""
    if config.batch_size % world_size:
        raise ConfigError(
            f"batch_size {config.batch_size} does not split evenly over {world_size} workers; "
            "choose a batch size divisible by the number of workers"
        )
    check_scopes_fit(config, config.batch_size // world_size)
    return config.batch_size // world_size


def run_steps(
    state: TrainingState,
    config: Config,
    task: DecompositionTask,
    *,
    rank: int = 0,
    world_size: int = 1,
    sync_gradients: Callable[[], None] | None = None,
    on_log: Callable[[LogRecord], None] | None = None,
    after_step: Callable[[TrainingState], None] | None = None,
    evaluate_now: Callable[[int], dict[str, float]] | None = None,
) -> None:
    """Optimise from `state.step` to `config.steps`.

    `sync_gradients` runs between backward and the optimiser step (DDP's all-reduce); `on_log`
    gets a record every `train_log_freq` steps and at the last; `after_step` runs after every
    step (checkpointing); `evaluate_now(step)`, where given, adds its figures under `eval/` to
    the records due for the evaluation figures. With several ranks the logged values are
    averaged over them, which is a collective: every rank must take part.
    """
    b = local_batch_size(config, world_size)
    ranks = RankGroup(world_size) if world_size > 1 else None
    while state.step < config.steps:
        step = state.step
        lr = scheduled_value(step, config.steps, config.lr_schedule)
        for group in state.optimizer.param_groups:
            group["lr"] = lr
        state.optimizer.zero_grad(set_to_none=True)
        batch = task.batch_fn(config.batch_size, state.data_gen)[rank * b : (rank + 1) * b]
        persistent = PersistentPGDRun(state.adversaries, step, rank)
        result = step_loss(
            state.model, batch, step, config, state.mask_gen, world_size, ranks, persistent
        )
        result.total.backward()
        if sync_gradients is not None:
            sync_gradients()
        ascend_after_backward(persistent, config, ranks)
        clip_gradients(state.model, config)
        state.optimizer.step()
        state.step = done = step + 1
        if on_log is not None and (done % config.train_log_freq == 0 or done == config.steps):
            terms = {k: v.detach() for k, v in result.terms.items()}
            terms["total"] = result.total.detach()
            l0 = with_l0_groups(
                ci_l0(result.ci.lower, config.ci_alive_threshold, result.item_weights),
                config.eval.l0_groups,
            )
            record = LogRecord(done, *_mean_over_ranks(terms, l0, world_size), lr)
            if done % config.eval_freq < config.train_log_freq:
                record.probes = probe_metrics(state.model, config, task.n_features)
                if evaluate_now is not None:
                    record.probes.update({f"eval/{k}": v for k, v in evaluate_now(done).items()})
            on_log(record)
        if after_step is not None:
            after_step(state)


def _mean_over_ranks(
    terms: dict[str, torch.Tensor], l0: dict[str, float], world_size: int
) -> tuple[dict[str, float], dict[str, float]]:
    device = next(iter(terms.values())).device
    values = torch.stack(
        [t.float().reshape(()) for t in terms.values()]
        + [torch.tensor(float(v), device=device) for v in l0.values()]
    )
    if world_size > 1:
        dist.all_reduce(values)
        values /= world_size
    flat = values.tolist()
    return dict(zip(terms, flat[: len(terms)], strict=True)), dict(
        zip(l0, flat[len(terms) :], strict=True)
    )
