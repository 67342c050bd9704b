"""The task of a target spd trains itself (TMS, ResidualMLP, induction transformer): trained or
loaded from the cache, and its data generator."""

from __future__ import annotations

from pathlib import Path
from typing import Any

import torch
from torch import Tensor

from spd_core.config import Config, ConfigError
from spd_core.model.component_model import select_modules
from spd_core.targets.induction.spec import InductionSpec
from spd_core.targets.registry import (
    TargetSpec,
    build_target_model,
    load_toy_target,
    parse_target_spec,
    toy_target_from_state,
    toy_target_spec,
)
from spd_core.targets.tiny_llama.spec import TINY_LLAMAS
from spd_core.targets.weights import StateDictWeights
from spd_core.task.definition import DecompositionTask

# Toy target kinds whose inputs are (batch, features) vectors, not sequences.
_FEATURE_VECTOR_KINDS = ("tms", "resid_mlp")


def toy_task(
    config: Config, device: torch.device, cache_dir: Path | None = None
) -> DecompositionTask:
    """Train (or load from cache) the toy target named by `config.target`."""
    if config.target is None:
        raise ConfigError("config has no `target`: name a toy target or pass a model from Python")
    if config.target.kind != "toy":
        raise ConfigError(f"target: kind '{config.target.kind}' is not a toy target; use make_task")
    if config.target.name in TINY_LLAMAS:
        raise ConfigError(
            f"target: '{config.target.name}' is a Hugging Face model spd builds; name it as "
            f"target: {{kind: hf, model: {config.target.name}, data: {{corpus: ...}}}}"
        )
    try:
        spec = toy_target_spec(config.target.name, **config.target.overrides)
    except ValueError as err:
        raise ConfigError(f"target: {err}") from None
    if config.ci_fn_type == "global_shared_transformer" and spec.kind in _FEATURE_VECTOR_KINDS:
        raise ConfigError(
            "ci_fn_type 'global_shared_transformer' attends over sequence positions, but toy "
            f"target '{config.target.name}' reads one feature vector per input; use "
            "'global_shared_mlp'"
        )
    select_modules(
        build_target_model(spec), config.module_info
    )  # fail on bad patterns before training
    return _toy_task(config.target.name, spec, load_toy_target(spec, cache_dir), device)


def toy_task_from_state(
    target_spec: dict[str, Any],
    state: dict[str, Tensor],
    device: torch.device,
    target_on_meta: bool = False,
) -> DecompositionTask:
    """The task of `toy_task` rebuilt from its `target_spec` and trained weights (no training):
    how distributed workers get exactly the target the driver trained. With `target_on_meta`
    the target's parameters stay on the meta device and the task's `target_weights` reads them
    from `state` (target sharding; a toy's state is small enough to ship whole)."""
    spec = parse_target_spec(target_spec["spec"])
    toy = toy_target_from_state(spec, state, on_meta=target_on_meta)
    weights = StateDictWeights(state) if target_on_meta else None
    return _toy_task(target_spec["name"], spec, toy, device, weights)


def _toy_task(
    name: str,
    spec: TargetSpec,
    toy: Any,
    device: torch.device,
    weights: StateDictWeights | None = None,
) -> DecompositionTask:
    """`weights`: where a target on the meta device reads its parameters (its state)."""
    model = toy.model if weights is not None else toy.model.to(device)
    data = toy.data

    def batch_fn(batch_size: int, generator: torch.Generator | None) -> Tensor:
        return data.generate(batch_size, generator=generator, device=device)

    # The induction target is a causal LM over token ids: CE/KL under masks apply to it.
    lm = isinstance(spec, InductionSpec)
    return DecompositionTask(
        target=model,
        batch_fn=batch_fn,
        target_spec={"kind": "toy", "name": name, "spec": spec.model_dump(mode="json")},
        target_state=weights.state
        if weights is not None
        else {k: v.detach().cpu() for k, v in model.state_dict().items()},
        n_features=None if lm else spec.n_features,
        causal_lm=lm,
        target_weights=weights,
    )
