"""What the components cost each rank in memory: parameters, gradients and optimiser state."""

from __future__ import annotations

import resource
import sys

import torch
import torch.distributed as dist

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
