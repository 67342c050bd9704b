"""What every run builds first: the component model of a task and the empty store it fills."""

from __future__ import annotations

from pathlib import Path

import torch

from spd_core import __version__
from spd_core.config import Config
from spd_core.eval.metrics.ci_l0 import l0_group_members
from spd_core.model.component_model import ComponentModel
from spd_core.store import ModuleLayout, StoreWriter
from spd_core.store.location import Location
from spd_core.task import DecompositionTask
from spd_core.train.loop import LogRecord
from spd_core.train.seeding import generator


def build_component_model(config: Config, task: DecompositionTask) -> ComponentModel:
    """Components and CI functions for the target, initialised from the config's seed; refuses
    `eval.l0_groups` patterns that match no decomposed module."""
    model = ComponentModel.from_config(
        task.target,
        config,
        generator(config.seed, "init", torch.device("cpu")),
        compile_ci_fn=config.compile_ci_fn,
    )
    l0_group_members(config.eval.l0_groups, model.module_names)
    return model


def create_store(
    path: str | Path | Location,
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
