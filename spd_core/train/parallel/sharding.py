"""How the components are split over ranks: FSDP2 units and the rows each rank owns."""

from __future__ import annotations

import math
from typing import Literal

import torch
from torch import Tensor
from torch.distributed.fsdp import FSDPModule, fully_shard, register_fsdp_forward_method
from torch.distributed.tensor import DTensor

from spd_core.config import GLOBAL_CI_FN_TYPES, Config, ConfigError
from spd_core.model.component_model import ComponentModel

Strategy = Literal["ddp", "fsdp"]
STRATEGIES: tuple[Strategy, ...] = ("ddp", "fsdp")

# Components methods that read U or V outside `forward`; FSDP must gather the factors for them.
_FACTOR_METHODS = ("inner_acts", "weight_delta")


def rows_per_shard(C: int, world_size: int) -> int:
    """Rows of a (C, …) parameter on each rank (the last may hold fewer): FSDP2's dim-0 split."""
    return max(1, math.ceil(C / world_size))


def shard_rows(C: int, world_size: int, rank: int) -> tuple[int, int]:
    """[start, stop) of the rows that `rank` owns; empty when C < world_size leaves it none."""
    per = rows_per_shard(C, world_size)
    start = min(rank * per, C)
    return start, min(start + per, C)


def check_fsdp_supports(config: Config) -> None:
    """Refuse, before any work, a CI function that fsdp cannot split into per-module units."""
    if config.ci_fn_type in GLOBAL_CI_FN_TYPES:
        raise ConfigError(
            "--strategy fsdp shards each module's factors and CI function as units of their own, "
            f"but ci_fn_type '{config.ci_fn_type}' is one network over every module's input; "
            "use --strategy ddp (the global CI function is replicated, its gradients averaged)"
        )
    if config.eval.during_training:
        raise ConfigError(
            "eval.during_training evaluates the whole model on one rank, but --strategy fsdp "
            "keeps it sharded; use --strategy ddp or set eval.during_training: false"
        )


def shard_components(model: ComponentModel) -> None:
    """Make each module's Components and its CI function an FSDP2 unit (the frozen target stays
    replicated unless `shard_target` ran first): parameters, gradients and optimiser state are
    then split over the ranks. A tied pair's factors become shards of their own, which
    `make_optimizer` keeps equal (`spd_core.train.parallel.tied_shards`)."""
    if model.global_ci_fn is not None:
        raise ValueError(f"FSDP cannot shard the global CI function '{model.ci_fn_type}'; use ddp")
    for name in model.module_names:
        comp = model.components_of(name)
        fully_shard(comp)
        for method in _FACTOR_METHODS:
            register_fsdp_forward_method(comp, method)
        fully_shard(model.ci_fn_of(name))


def reshard(model: ComponentModel) -> None:
    """Return every FSDP unit to its sharded state: a forward without a backward (an evaluation
    under no_grad) leaves the units it ran gathered, and later reads of the factors expect shards."""
    for module in model.modules():
        if isinstance(module, FSDPModule):
            module.reshard()


def local_part(t: Tensor) -> Tensor:
    """The rank's own data of a parameter: its shard under FSDP, the tensor itself otherwise."""
    return t.to_local() if isinstance(t, DTensor) else t


def full_value(t: Tensor) -> Tensor:
    """The whole parameter on every rank (a collective for sharded tensors)."""
    return t.full_tensor() if isinstance(t, DTensor) else t


def owned_rows(param: Tensor, rank: int, world_size: int) -> tuple[int, Tensor]:
    """(first row, rows) of a component-major factor that this rank writes to the store."""
    C = param.shape[0]
    start, stop = shard_rows(C, world_size, rank)
    if isinstance(param, DTensor):
        rows = param.to_local()
        if rows.shape[0] != stop - start:
            raise RuntimeError(
                f"FSDP shard of {rows.shape[0]} rows does not match the expected rows "
                f"[{start}, {stop}) of C={C} over {world_size} ranks"
            )
        return start, rows.detach()
    return start, param.detach()[start:stop]


@torch.no_grad()
def full_trainable_state(model: ComponentModel, keep: bool = True) -> dict[str, Tensor]:
    """Components and CI-function parameters, gathered whole (every rank must call this). A rank
    with `keep=False` takes part in each gather and drops the result at once, so it never holds
    more than one whole parameter; it gets {}."""
    state = {}
    for k, v in trainable_items(model):
        whole = full_value(v)
        if keep:
            state[k] = whole.detach().clone()
    return state


def trainable_items(model: ComponentModel) -> list[tuple[str, Tensor]]:
    """(state-dict name, tensor) of everything SPD trains; the frozen target (and the
    components' copies of its weights, parameters under target sharding) is excluded."""
    frozen = {k for k, p in model.named_parameters() if not p.requires_grad}
    return [
        (k, v)
        for k, v in model.state_dict().items()
        if not k.startswith("target.") and k not in frozen
    ]
