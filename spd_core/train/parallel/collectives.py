"""The data-parallel ranks as a loss term sees them: adversarial PGD sources shared by the whole
global batch start equal on every rank and ascend the gradient averaged over the ranks."""

from __future__ import annotations

import torch
import torch.distributed as dist
from torch import Tensor


class RankGroup:
    """The `world_size` ranks of an initialised torch.distributed run."""

    def __init__(self, world_size: int):
        self.world_size = world_size

    def average(self, tensors: list[Tensor]) -> list[Tensor]:
        """Each tensor's mean over the ranks (one flat all-reduce, in float32)."""
        flat = torch.cat([t.reshape(-1).float() for t in tensors])
        dist.all_reduce(flat)
        flat /= self.world_size
        out, offset = [], 0
        for t in tensors:
            out.append(flat[offset : offset + t.numel()].view_as(t).to(t.dtype))
            offset += t.numel()
        return out

    def broadcast(self, tensors: list[Tensor]) -> None:
        """Overwrite every rank's tensors with rank 0's, in place."""
        for t in tensors:
            dist.broadcast(t, src=0)
