"""One rank of a decomposition, from model build to its rows of the factor store.

The caller (the single-process driver, a Ray Train worker, or any launcher that has set up
torch.distributed) supplies the task, where to resume from and how to save a checkpoint;
every runner goes through this same code.
"""

from __future__ import annotations

from collections.abc import Callable
from dataclasses import dataclass
from functools import partial
from pathlib import Path

import torch

from spd_core.config import Config
from spd_core.eval.evaluation import evaluate
from spd_core.model.component_model import ComponentModel
from spd_core.store import StoreWriter
from spd_core.store.location import Location
from spd_core.task import DecompositionTask
from spd_core.train import training_state
from spd_core.train.loop import LogRecord, TrainingState, new_generators, run_steps
from spd_core.train.parallel.gradients import average_gradients
from spd_core.train.parallel.memory import (
    component_state_bytes,
    max_over_ranks,
    peak_rss_bytes,
    target_bytes,
)
from spd_core.train.parallel.sharding import (
    Strategy,
    check_fsdp_supports,
    full_trainable_state,
    full_value,
    owned_rows,
    shard_components,
)
from spd_core.train.parallel.target_loading import build_sharded_model
from spd_core.train.parallel.target_sharding import check_target_sharding
from spd_core.train.seeding import generator
from spd_core.train.setup import build_component_model, curve_values
from spd_core.train.step import faithfulness_warmup, make_optimizer


@dataclass
class WorkerPlan:
    """What one rank runs: the store to fill (None: keep the result in memory only), the
    strategy, and checkpoint cadence."""

    config: Config
    store: str | Path | Location | None
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


@dataclass
class RunResult:
    """Rank 0's outcome: the trained model (whole; still sharded under `shard_target`, where
    no rank gathers the target) and the metrics the store holds."""

    model: ComponentModel
    metrics: dict[str, float]


def run_worker(
    plan: WorkerPlan,
    task: DecompositionTask,
    *,
    resume_from: Path | None = None,
    save_checkpoint: Callable[[TrainingState], None] | None = None,
    on_log: Callable[[LogRecord], None] | None = None,
) -> RunResult | None:
    """Train, write this rank's rows of every factor, and (rank 0) finish the store.

    `save_checkpoint` is called on every rank every `checkpoint_every` steps; `resume_from` is a
    directory a previous `save_checkpoint` filled. Returns the result on rank 0, None elsewhere.
    """
    config, rank, world = plan.config, plan.rank, plan.world_size
    memory: dict[str, int] = {"peak_rss_bytes_after_load": peak_rss_bytes()}  # imports, task
    if plan.strategy == "fsdp":
        check_fsdp_supports(config)
    warm_up = resume_from is None  # a resumed run restores the warmed-up factors
    if config.shard_target:  # each rank reads its rows of the target; warm up the shards
        check_target_sharding(task.target, plan.strategy, world)
        model = build_sharded_model(config, task, plan.device)
        memory["peak_rss_bytes_after_setup"] = peak_rss_bytes()
        warmup_loss = faithfulness_warmup(model, config) if warm_up else float("nan")
    else:  # the whole target on every rank: warm up whole, then shard the components
        model = build_component_model(config, task).to(plan.device)
        memory["peak_rss_bytes_after_setup"] = peak_rss_bytes()
        warmup_loss = faithfulness_warmup(model, config) if warm_up else float("nan")
        if plan.strategy == "fsdp":
            shard_components(model)
    memory["peak_rss_bytes_after_warmup"] = peak_rss_bytes()
    data_gen, mask_gen = new_generators(config, plan.device, rank, world)
    optimizer = make_optimizer(model, config.lr_schedule.start_val)
    state = TrainingState(model, optimizer, data_gen, mask_gen)
    state.extra["faithfulness_warmup_loss"] = warmup_loss
    if resume_from is not None:
        resume(state, task, config, resume_from, rank, world)

    writer = StoreWriter.open_existing(plan.store) if plan.store is not None else None
    if rank == 0 and writer is not None:  # also a restart without a checkpoint: start over
        writer.truncate_curves(after_step=state.step)

    def log(record: LogRecord) -> None:
        if rank == 0:
            if writer is not None:
                writer.append_curves(record.step, curve_values(record))
            if on_log is not None:
                on_log(record)

    def after_step(s: TrainingState) -> None:
        if "target_bytes" not in memory:  # after the first step: gradients, Adam's moments exist
            memory["component_state_bytes"] = component_state_bytes(model, optimizer)
            memory["target_bytes"] = target_bytes(model)
            memory["peak_rss_bytes_after_first_step"] = peak_rss_bytes()
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
        evaluate_now=_periodic_evaluation(plan, task, model) if rank == 0 else None,
    )
    if writer is not None:
        _write_owned_rows(writer, model, rank, world)
    memory["peak_rss_bytes_after_training"] = peak_rss_bytes()
    metrics: dict[str, float] = {}
    ci_params: dict[str, dict[str, torch.Tensor]] = {}
    if config.shard_target:  # no rank holds the whole target: every rank evaluates, sharded
        metrics = _final_metrics(plan, task, model, state)
        ci_params = _ci_fn_params(model)
    else:  # under fsdp rank 0 evaluates the whole model, gathered
        sharded = plan.strategy == "fsdp"
        full = full_trainable_state(model, keep=rank == 0) if sharded else None
        if rank == 0:
            if full is not None:
                model = _gathered_model(plan, task, full)
            metrics = _final_metrics(plan, task, model, state)
            ci_params = _ci_fn_params(model)
    memory["peak_rss_bytes"] = peak_rss_bytes()
    # a collective: every rank's rows are in the store before rank 0 marks it complete
    memory = max_over_ranks(memory, world)
    if rank != 0:
        return None
    metrics.update({f"memory/{k}_per_worker": v for k, v in memory.items()})
    if writer is not None:
        _finish_store(writer, model, task, metrics, ci_params)
    return RunResult(model, metrics)


def _write_owned_rows(writer: StoreWriter, model: ComponentModel, rank: int, world: int) -> None:
    for name in model.module_names:
        comp = model.components_of(name)
        for factor in ("U", "V"):
            start, rows = owned_rows(getattr(comp, factor), rank, world)
            writer.write_factor_rows(name, factor, start, rows.cpu())


def _gathered_model(
    plan: WorkerPlan, task: DecompositionTask, full: dict[str, torch.Tensor]
) -> ComponentModel:
    """The whole model rebuilt from the state gathered from every rank's shards."""
    model = build_component_model(plan.config, task).to(plan.device)
    missing, _ = model.load_state_dict(full, strict=False)
    untrained = [k for k in missing if not k.startswith("target.")]
    if untrained:
        raise RuntimeError(f"gathered state lacks {untrained}")
    return model


def _evaluate_at(
    plan: WorkerPlan, task: DecompositionTask, model: ComponentModel, step: int
) -> dict[str, float]:
    """The whole evaluation at `step`, on the same held-out batches every time (its own
    generator: evaluating during training does not change the run's course)."""
    config = plan.config
    return evaluate(
        model,
        config,
        task.eval_batch_fn or task.batch_fn,
        generator(config.seed, "eval", plan.device),
        step,
        task.n_features,
        task.causal_lm,
    )


def _periodic_evaluation(
    plan: WorkerPlan, task: DecompositionTask, model: ComponentModel
) -> Callable[[int], dict[str, float]] | None:
    """With `eval.during_training`, `_evaluate_at` for the loop to call at a given step."""
    if not plan.config.eval.during_training:
        return None
    return partial(_evaluate_at, plan, task, model)


def _final_metrics(
    plan: WorkerPlan,
    task: DecompositionTask,
    model: ComponentModel,
    state: TrainingState,
) -> dict[str, float]:
    """The evaluation of the whole model, with how the run went (warm-up, restarts, workers)."""
    metrics = _evaluate_at(plan, task, model, plan.config.steps)
    metrics["faithfulness_warmup_loss"] = float(state.extra["faithfulness_warmup_loss"])
    metrics["restarts"] = state.restarts
    metrics["workers"] = plan.world_size
    return metrics


def _ci_fn_params(model: ComponentModel) -> dict[str, dict[str, torch.Tensor]]:
    """Each module's CI-function parameters, whole (a collective where they are sharded: every
    rank must call it then); {} for a global CI function."""
    if model.global_ci_fn is not None:
        return {}
    out = {}
    for name in model.module_names:
        state = model.ci_fn_of(name).state_dict()
        out[name] = {k: full_value(v).detach().cpu() for k, v in state.items()}
    return out


def _finish_store(
    writer: StoreWriter,
    model: ComponentModel,
    task: DecompositionTask,
    metrics: dict[str, float],
    ci_params: dict[str, dict[str, torch.Tensor]],
) -> None:
    """Rank 0: CI functions, target and metrics, then mark the store complete (last)."""
    if model.global_ci_fn is not None:
        params = {k: v.detach().cpu() for k, v in model.global_ci_fn.state_dict().items()}
        writer.write_global_ci_fn(params, model.global_ci_fn.architecture())
    else:
        for name in model.module_names:
            writer.write_ci_fn(name, ci_params[name], model.ci_fn_type, model.ci_fn_hidden_dims)
    if task.target_state is not None:
        writer.write_target(task.target_state)
    writer.update_metrics(metrics)
    writer.mark_complete()
