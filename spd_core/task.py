"""What a decomposition runs on: a frozen target, a batch source, and how to rebuild the target."""

from __future__ import annotations

from collections.abc import Callable
from dataclasses import dataclass
from pathlib import Path
from typing import Any

import torch
from torch import Tensor, nn

from spd_core.config import Config, ConfigError

BatchFn = Callable[[int, torch.Generator | None], Tensor]


@dataclass
class DecompositionTask:
    """`batch_fn(batch_size, generator)` yields input batches on the target's device.

    `target_spec` (JSON-able) says how to rebuild the target; `target_state`, when given, is stored
    with the factors so the store is self-contained; `n_features` enables one-hot CI metrics.
    `eval_batch_fn` draws evaluation batches from held-out data (default: `batch_fn`);
    `causal_lm` adds next-token CE/KL under masks to the evaluation. A batch source that ignores
    the generator (a text stream) gives `skip_batches(n_batches, batch_size)`, which moves it past
    the batches a resumed run already trained on.
    """

    target: nn.Module
    batch_fn: BatchFn
    target_spec: dict[str, Any]
    target_state: dict[str, Tensor] | None = None
    n_features: int | None = None
    eval_batch_fn: BatchFn | None = None
    causal_lm: bool = False
    skip_batches: Callable[[int, int], None] | None = None


def make_task(
    config: Config, device: torch.device, cache_dir: Path | None = None
) -> DecompositionTask:
    """The task for the config's target: a toy target or a Hugging Face model."""
    if config.target is not None and config.target.kind == "hf":
        from spd_core.hf.task import hf_task

        return hf_task(config, device, cache_dir)
    return toy_task(config, device, cache_dir)


def toy_task(
    config: Config, device: torch.device, cache_dir: Path | None = None
) -> DecompositionTask:
    """Train (or load from cache) the toy target named by `config.target`."""
    from spd_core.component_model import select_modules
    from spd_core.targets.registry import load_toy_target, toy_target_spec
    from spd_core.targets.training import build_model

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
    from spd_core.targets.registry import toy_target_from_state
    from spd_core.targets.spec import ToyTargetSpec

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
