"""The single-process decomposition loop: warm-up, optimisation, evaluation, the factor store."""

from __future__ import annotations

from collections.abc import Callable
from dataclasses import dataclass
from pathlib import Path
from typing import Any

import torch

from spd_core import __version__
from spd_core.component_model import ComponentModel
from spd_core.config import Config
from spd_core.evaluation import evaluate
from spd_core.metrics.ci_l0 import ci_l0
from spd_core.progress import ProgressEvent, RateMeter
from spd_core.schedule import scheduled_value
from spd_core.seeding import generator
from spd_core.step import clip_gradients, faithfulness_warmup, make_optimizer, step_loss
from spd_core.store import ModuleLayout, StoreWriter
from spd_core.task import DecompositionTask


@dataclass
class DecompositionResult:
    model: ComponentModel
    metrics: dict[str, float]
    store_path: Path | None


def build_component_model(config: Config, task: DecompositionTask) -> ComponentModel:
    """Components and CI functions for the target, initialised from the config's seed."""
    return ComponentModel(
        task.target,
        config.module_info,
        ci_fn_type=config.ci_fn_type,
        ci_fn_hidden_dims=config.ci_fn_hidden_dims,
        sigmoid_type=config.sigmoid_type,
        output_attr=config.pretrained_model_output_attr,
        generator=generator(config.seed, "init", torch.device("cpu")),
    )


def create_store(
    path: str | Path,
    model: ComponentModel,
    config: Config,
    task: DecompositionTask,
    overwrite: bool,
) -> StoreWriter:
    """An empty store (marked incomplete) laid out for the model's modules."""
    layouts = {}
    for name in model.module_names:
        comp = model.components_of(name)
        layouts[name] = ModuleLayout(kind=comp.kind, C=comp.C, d_in=comp.d_in, d_out=comp.d_out)
    return StoreWriter.create(
        path,
        modules=layouts,
        config=config.model_dump(mode="json"),
        target_spec=task.target_spec,
        overwrite=overwrite,
        code_version=__version__,
    )


def write_model(writer: StoreWriter, model: ComponentModel, task: DecompositionTask) -> None:
    """Factors, CI-function parameters and (for self-contained stores) the target's weights."""
    for name in model.module_names:
        comp = model.components_of(name)
        writer.write_factors(name, comp.U.detach().cpu(), comp.V.detach().cpu())
        params = {k: v.detach().cpu() for k, v in model.ci_fn_of(name).state_dict().items()}
        writer.write_ci_fn(name, params, model.ci_fn_type, model.ci_fn_hidden_dims)
    if task.target_state is not None:
        writer.write_target(task.target_state)


def decompose(
    config: Config,
    task: DecompositionTask,
    *,
    out: str | Path | None = None,
    overwrite: bool = False,
    device: torch.device | str = "cpu",
    progress: Callable[[ProgressEvent], None] | None = None,
) -> DecompositionResult:
    """Run SPD on one process. With `out`, the store is created first (incomplete), training curves
    are appended as it runs, and it is marked complete only after everything is written."""
    device = torch.device(device)
    model = build_component_model(config, task).to(device)
    writer = create_store(out, model, config, task, overwrite) if out is not None else None
    data_gen = generator(config.seed, "data", device)
    mask_gen = generator(config.seed, "masks", device)

    warmup_loss = faithfulness_warmup(model, config)
    optimizer = make_optimizer(model, config.lr_schedule.start_val)
    meter = RateMeter()
    for step in range(config.steps):
        lr = scheduled_value(step, config.steps, config.lr_schedule)
        for group in optimizer.param_groups:
            group["lr"] = lr
        optimizer.zero_grad(set_to_none=True)
        batch = task.batch_fn(config.batch_size, data_gen)
        result = step_loss(model, batch, step, config, mask_gen)
        result.total.backward()
        clip_gradients(model, config)
        optimizer.step()
        done = step + 1
        if done % config.train_log_freq == 0 or done == config.steps:
            terms = {k: float(v.detach()) for k, v in result.terms.items()}
            terms["total"] = float(result.total.detach())
            l0 = ci_l0(result.ci.lower, config.ci_alive_threshold)
            rate = meter.update(done)
            if writer is not None:
                curves: dict[str, Any] = {f"loss/{k}": v for k, v in terms.items()}
                curves.update({f"l0/{k}": v for k, v in l0.items()})
                curves["lr"] = lr
                writer.append_curves(done, curves)
            if progress is not None:
                eta = (config.steps - done) / rate if rate > 0 else float("inf")
                progress(ProgressEvent(done, config.steps, terms, l0, rate, eta))

    metrics = evaluate(
        model,
        config,
        task.eval_batch_fn or task.batch_fn,
        generator(config.seed, "eval", device),
        config.steps,
        task.n_features,
        task.causal_lm,
    )
    metrics["faithfulness_warmup_loss"] = warmup_loss
    if writer is not None:
        write_model(writer, model, task)
        writer.update_metrics(metrics)
        writer.mark_complete()
    return DecompositionResult(model, metrics, Path(out) if out is not None else None)
