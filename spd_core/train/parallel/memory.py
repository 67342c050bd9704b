"""What each rank holds in memory: the components' parameters, gradients and optimiser state, the
frozen target, and the process's peak."""

from __future__ import annotations

import resource
import sys

import torch
import torch.distributed as dist

from spd_core.model.component_model import ComponentModel
from spd_core.train.parallel.sharding import local_part


def component_state_bytes(model: torch.nn.Module, optimizer: torch.optim.Optimizer) -> int:
    """Bytes this rank holds for trained parameters, their gradients and Adam's moments."""
    total = 0
    for p in model.parameters():
        if not p.requires_grad:
            continue
        total += local_part(p).nbytes
        if p.grad is not None:
            total += local_part(p.grad).nbytes
    for entry in optimizer.state.values():
        for value in entry.values():
            if isinstance(value, torch.Tensor):
                total += local_part(value).nbytes
    return total


def target_bytes(model: ComponentModel) -> int:
    """Bytes this rank holds for the frozen target between passes: its parameters and buffers
    and the components' copies of the decomposed weights and biases (shards where sharded)."""
    tensors = list(model.target.parameters()) + list(model.target.buffers())
    for comp in model.components_by_name().values():
        tensors += [t for t in (comp.weight, comp.bias) if t is not None]
    unique = {id(t): t for t in tensors}  # a tied embedding and head count once
    return sum(local_part(t).nbytes for t in unique.values())


def peak_rss_bytes() -> int:
    """The process's peak resident memory so far."""
    peak = resource.getrusage(resource.RUSAGE_SELF).ru_maxrss
    return peak if sys.platform == "darwin" else peak * 1024


def max_over_ranks(values: dict[str, int], world_size: int) -> dict[str, int]:
    """Each value's maximum over the ranks (a collective when world_size > 1)."""
    if world_size == 1:
        return dict(values)
    gathered: list[dict[str, int] | None] = [None] * world_size
    dist.all_gather_object(gathered, values)
    return {k: max(g[k] for g in gathered if g is not None) for k in values}
