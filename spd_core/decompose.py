"""The single-process decomposition loop: warm-up, optimisation, evaluation, the factor store."""

from __future__ import annotations

from collections.abc import Callable
from dataclasses import dataclass
from pathlib import Path

import torch

from spd_core import __version__
from spd_core.component_model import ComponentModel
from spd_core.config import Config
from spd_core.evaluation import evaluate
from spd_core.progress import ProgressEvent, RateMeter, progress_event
from spd_core.seeding import generator
from spd_core.step import faithfulness_warmup, make_optimizer
from spd_core.store import ModuleLayout, StoreWriter
from spd_core.task import DecompositionTask
from spd_core.training_loop import LogRecord, TrainingState, new_generators, run_steps


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
        compile_ci_fn=config.compile_ci_fn,
        tied_components=config.tied_components,
    )


def create_store(
    path: str | Path,
    model: ComponentModel,
    config: Config,
    task: DecompositionTask,
    overwrite: bool,
    chunk_c: dict[str, int] | None = None,
) -> StoreWriter:
    """An empty store (marked incomplete) laid out for the model's modules; `chunk_c` gives the
    rows per chunk of each module (default: one chunk)."""
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
        chunk_c=chunk_c,
        code_version=__version__,
    )


def curve_values(record: LogRecord) -> dict[str, float]:
    """One record of the store's training curves: loss terms, L0 per module, learning rate, and
    (every `eval_freq` steps) the data-free evaluation figures under their metric names."""
    values = {f"loss/{k}": v for k, v in record.terms.items()}
    values.update({f"l0/{k}": v for k, v in record.l0.items()})
    values["lr"] = record.lr
    values.update(record.probes)
    return values


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
    warmup_loss = faithfulness_warmup(model, config)
    data_gen, mask_gen = new_generators(config, device)
    optimizer = make_optimizer(model, config.lr_schedule.start_val)
    state = TrainingState(model, optimizer, data_gen, mask_gen)
    meter = RateMeter()

    def on_log(record: LogRecord) -> None:
        if writer is not None:
            writer.append_curves(record.step, curve_values(record))
        if progress is not None:
            progress(progress_event(record, config.steps, meter.update(record.step)))

    run_steps(state, config, task, on_log=on_log)
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
