"""DDP for SPD: average every gradient over the ranks with one flat all-reduce per step.

A step is several forwards through the component model (clean pass, CI, masked passes), not one
`module.forward`, so the gradients are averaged explicitly after backward rather than by the
`DistributedDataParallel` wrapper's hooks.
"""

from __future__ import annotations

import torch
import torch.distributed as dist
from torch import nn


def average_gradients(params: list[nn.Parameter], world_size: int) -> None:
    """grad ← mean over ranks of grad (a missing grad counts as zero on that rank)."""
    if world_size == 1:
        return
    grads = [p.grad if p.grad is not None else torch.zeros_like(p) for p in params]
    flat = torch.cat([g.reshape(-1) for g in grads])
    dist.all_reduce(flat)
    flat /= world_size
    offset = 0
    for p, g in zip(params, grads, strict=True):
        n = g.numel()
        p.grad = flat[offset : offset + n].view_as(p)  # views of this step's buffer: no copy
        offset += n
