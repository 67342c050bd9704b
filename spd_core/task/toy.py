"""The task of a toy target (TMS, ResidualMLP): trained or loaded from the cache, its data generator."""

from __future__ import annotations

from pathlib import Path
from typing import Any

import torch
from torch import Tensor

from spd_core.config import Config, ConfigError
from spd_core.model.component_model import select_modules
from spd_core.targets.registry import load_toy_target, toy_target_from_state, toy_target_spec
from spd_core.targets.spec import ToyTargetSpec
from spd_core.targets.training import build_model
from spd_core.task.definition import DecompositionTask


def toy_task(
    config: Config, device: torch.device, cache_dir: Path | None = None
) -> DecompositionTask:
    """Train (or load from cache) the toy target named by `config.target`."""
    if config.target is None:
        raise ConfigError("config has no `target`: name a toy target or pass a model from Python")
    if config.target.kind != "toy":
        raise ConfigError(f"target: kind '{config.target.kind}' is not a toy target; use make_task")
    try:
        spec = toy_target_spec(config.target.name, **config.target.overrides)
    except ValueError as err:
        raise ConfigError(f"target: {err}") from None
    select_modules(build_model(spec), config.module_info)  # fail on bad patterns before training
    return _toy_task(config.target.name, spec, load_toy_target(spec, cache_dir), device)


def toy_task_from_state(
    target_spec: dict[str, Any], state: dict[str, Tensor], device: torch.device
) -> DecompositionTask:
    """The task of `toy_task` rebuilt from its `target_spec` and trained weights (no training):
    how distributed workers get exactly the target the driver trained."""
    spec = ToyTargetSpec.model_validate(target_spec["spec"])
    toy = toy_target_from_state(spec, state)
    return _toy_task(target_spec["name"], spec, toy, device)


def _toy_task(name: str, spec: Any, toy: Any, device: torch.device) -> DecompositionTask:
    model = toy.model.to(device)
    data = toy.data

    def batch_fn(batch_size: int, generator: torch.Generator | None) -> Tensor:
        return data.generate(batch_size, generator=generator, device=device)

    return DecompositionTask(
        target=model,
        batch_fn=batch_fn,
        target_spec={"kind": "toy", "name": name, "spec": spec.model_dump(mode="json")},
        target_state={k: v.detach().cpu() for k, v in model.state_dict().items()},
        n_features=spec.n_features,
    )
