"""A rank's training state as plain tensors: saved at checkpoints, restored on resume.

Under FSDP every rank holds only its shards of the parameters and of Adam's moments; each rank
saves and restores its own part, so resuming needs the same number of workers.
"""

from __future__ import annotations

from pathlib import Path
from typing import Any

import torch
from torch import Tensor
from torch.distributed.tensor import DTensor

from spd_core.config import ConfigError
from spd_core.losses.persistent_pgd import PersistentSources
from spd_core.train.loop import TrainingState
from spd_core.train.parallel.sharding import local_part, trainable_items

FORMAT_VERSION = 1


def state_file(directory: str | Path, rank: int) -> Path:
    return Path(directory) / f"rank-{rank:05d}.pt"


def capture(state: TrainingState, world_size: int) -> dict[str, Any]:
    """This rank's complete training state (model shards, optimiser, RNG, step, restarts,
    persistent-PGD sources with their optimiser's moments)."""
    return {
        "format": FORMAT_VERSION,
        "world_size": world_size,
        "step": state.step,
        "restarts": state.restarts,
        "extra": dict(state.extra),
        "model": {k: local_part(v).detach().clone() for k, v in trainable_items(state.model)},
        "optimizer": _to_local(state.optimizer.state_dict()),
        "data_gen": state.data_gen.get_state(),
        "mask_gen": state.mask_gen.get_state(),
        "adversaries": {k: v.state_dict() for k, v in state.adversaries.items()},
    }


def save(state: TrainingState, directory: str | Path, rank: int, world_size: int) -> Path:
    path = state_file(directory, rank)
    torch.save(capture(state, world_size), path)
    return path


def load(state: TrainingState, directory: str | Path, rank: int, world_size: int) -> None:
    """Restore `state` in place from the file this rank saved in `directory`."""
    path = state_file(directory, rank)
    if not path.exists():
        raise ConfigError(
            f"checkpoint {directory} has no state for rank {rank}; it was written by fewer "
            f"workers than the {world_size} now running"
        )
    payload = torch.load(path, map_location="cpu", weights_only=False)
    if payload["world_size"] != world_size:
        raise ConfigError(
            f"checkpoint {directory} was written by {payload['world_size']} workers; resume "
            f"with --workers {payload['world_size']} (now {world_size})"
        )
    restore(state, payload)


@torch.no_grad()
def restore(state: TrainingState, payload: dict[str, Any]) -> None:
    params = dict(trainable_items(state.model))
    for name, saved in payload["model"].items():
        local_part(params[name]).copy_(saved)
    state.optimizer.load_state_dict(_like_params(payload["optimizer"], state.optimizer))
    state.data_gen.set_state(payload["data_gen"])
    state.mask_gen.set_state(payload["mask_gen"])
    state.step = payload["step"]
    state.restarts = payload["restarts"]
    state.extra = dict(payload["extra"])
    device = next(iter(params.values())).device
    state.adversaries = {
        k: PersistentSources.from_state_dict(v, device)
        for k, v in payload.get("adversaries", {}).items()
    }


def _to_local(obj: Any) -> Any:
    if isinstance(obj, DTensor):
        return obj.to_local().detach().clone()
    if isinstance(obj, dict):
        return {k: _to_local(v) for k, v in obj.items()}
    if isinstance(obj, list):
        return [_to_local(v) for v in obj]
    return obj


def _like_params(opt_state: dict[str, Any], optimizer: torch.optim.Optimizer) -> dict[str, Any]:
    """Re-wrap saved shards of Adam's moments as DTensors placed like their parameters."""
    params = [p for group in optimizer.param_groups for p in group["params"]]
    state = {}
    for index, entry in opt_state["state"].items():
        param = params[index]
        state[index] = {k: _placed_like(v, param) for k, v in entry.items()}
    return {"state": state, "param_groups": opt_state["param_groups"]}


def _placed_like(value: Any, param: Tensor) -> Any:
    if isinstance(param, DTensor) and isinstance(value, Tensor) and value.dim() > 0:
        return DTensor.from_local(
            value.to(param.to_local().device),
            param.device_mesh,
            param.placements,
            shape=param.shape,
            stride=param.stride(),
        )
    return value
