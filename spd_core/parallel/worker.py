"""One rank of a distributed decomposition, from model build to its rows of the factor store.

The caller (a Ray Train worker, or any launcher that has set up torch.distributed) supplies the
task, where to resume from and how to save a checkpoint; everything else is the same code the
single-process run uses.
"""

from __future__ import annotations

from collections.abc import Callable
from dataclasses import dataclass
from pathlib import Path

import torch
import torch.distributed as dist

from spd_core.component_model import ComponentModel
from spd_core.config import Config
from spd_core.decompose import build_component_model, curve_values
from spd_core.evaluation import evaluate
from spd_core.parallel import training_state
from spd_core.parallel.gradients import average_gradients
from spd_core.parallel.memory import component_state_bytes, max_over_ranks, peak_rss_bytes
from spd_core.parallel.sharding import (
    Strategy,
    full_trainable_state,
    owned_rows,
    shard_components,
)
from spd_core.seeding import generator
from spd_core.step import faithfulness_warmup, make_optimizer
from spd_core.store import StoreWriter
from spd_core.task import DecompositionTask
from spd_core.training_loop import LogRecord, TrainingState, new_generators, run_steps


@dataclass
class WorkerPlan:
    """What one rank runs: the store to fill, the strategy, and checkpoint cadence."""

    config: Config
    store: str | Path
    strategy: Strategy
    rank: int
    world_size: int
    device: torch.device
    checkpoint_every: int


def resume(
    state: TrainingState,
    task: DecompositionTask,
    config: Config,
    directory: Path,
    rank: int,
    world: int,
) -> None:
    """Restore this rank's state from a checkpoint and move a generator-free batch stream past
    the batches of the steps already done (every rank draws whole global batches)."""
    training_state.load(state, directory, rank, world)
    state.restarts += 1
    if task.skip_batches is not None:
        task.skip_batches(state.step, config.batch_size)


def run_worker(
    plan: WorkerPlan,
    task: DecompositionTask,
    *,
    resume_from: Path | None = None,
    save_checkpoint: Callable[[TrainingState], None] | None = None,
    on_log: Callable[[LogRecord], None] | None = None,
) -> dict[str, float] | None:
    """Train, write this rank's rows of every factor, and (rank 0) finish the store.

    `save_checkpoint` is called on every rank every `checkpoint_every` steps; `resume_from` is a
    directory a previous `save_checkpoint` filled. Returns the final metrics on rank 0.
    """
    config, rank, world = plan.config, plan.rank, plan.world_size
    model = build_component_model(config, task).to(plan.device)
    warmup_loss = float("nan") if resume_from is not None else faithfulness_warmup(model, config)
    if plan.strategy == "fsdp":
        shard_components(model)
    data_gen, mask_gen = new_generators(config, plan.device, rank, world)
    optimizer = make_optimizer(model, config.lr_schedule.start_val)
    state = TrainingState(model, optimizer, data_gen, mask_gen)
    state.extra["faithfulness_warmup_loss"] = warmup_loss
    if resume_from is not None:
        resume(state, task, config, resume_from, rank, world)

    writer = StoreWriter.open_existing(plan.store)
    if rank == 0:  # also a restart without a checkpoint: the stopped run's curves start over
        writer.truncate_curves(after_step=state.step)

    def log(record: LogRecord) -> None:
        if rank == 0:
            writer.append_curves(record.step, curve_values(record))
            if on_log is not None:
                on_log(record)

    memory: dict[str, int] = {}

    def after_step(s: TrainingState) -> None:
        if not memory:  # after the first step, when gradients and Adam's moments exist
            memory["component_state_bytes"] = component_state_bytes(model, optimizer)
        due = s.step % plan.checkpoint_every == 0 and s.step < config.steps
        if save_checkpoint is not None and due:
            save_checkpoint(s)

    params = model.component_parameters() + model.ci_parameters()
    run_steps(
        state,
        config,
        task,
        rank=rank,
        world_size=world,
        sync_gradients=(lambda: average_gradients(params, world))
        if plan.strategy == "ddp"
        else None,
        on_log=log,
        after_step=after_step,
    )
    _write_owned_rows(writer, model, rank, world)
    memory["peak_rss_bytes"] = peak_rss_bytes()
    memory = max_over_ranks(memory, world)
    full = full_trainable_state(model, keep=rank == 0)  # only rank 0 evaluates the whole model
    if world > 1:
        dist.barrier()  # every rank's rows are in the store before rank 0 marks it complete
    if rank != 0:
        return None
    return _finish_store(writer, plan, task, full, state, memory)


def _write_owned_rows(writer: StoreWriter, model: ComponentModel, rank: int, world: int) -> None:
    for name in model.module_names:
        comp = model.components_of(name)
        for factor in ("U", "V"):
            start, rows = owned_rows(getattr(comp, factor), rank, world)
            writer.write_factor_rows(name, factor, start, rows.cpu())


def _finish_store(
    writer: StoreWriter,
    plan: WorkerPlan,
    task: DecompositionTask,
    full: dict[str, torch.Tensor],
    state: TrainingState,
    memory: dict[str, int],
) -> dict[str, float]:
    """Rank 0: rebuild the whole model, evaluate it, store CI functions, target and metrics."""
    config = plan.config
    model = build_component_model(config, task).to(plan.device)
    missing, _ = model.load_state_dict(full, strict=False)
    untrained = [k for k in missing if not k.startswith("target.")]
    if untrained:
        raise RuntimeError(f"gathered state lacks {untrained}")
    metrics = evaluate(
        model,
        config,
        task.eval_batch_fn or task.batch_fn,
        generator(config.seed, "eval", plan.device),
        config.steps,
        task.n_features,
        task.causal_lm,
    )
    metrics["faithfulness_warmup_loss"] = float(state.extra["faithfulness_warmup_loss"])
    metrics["restarts"] = state.restarts
    metrics["workers"] = plan.world_size
    metrics.update({f"memory/{k}_per_worker": v for k, v in memory.items()})
    for name in model.module_names:
        params = {k: v.detach().cpu() for k, v in model.ci_fn_of(name).state_dict().items()}
        writer.write_ci_fn(name, params, model.ci_fn_type, model.ci_fn_hidden_dims)
    if task.target_state is not None:
        writer.write_target(task.target_state)
    writer.update_metrics(metrics)
    writer.mark_complete()
    return metrics
