"""Tied components under fsdp: the tie kept across shards by the optimiser.

Unsharded, a tied pair's four factors are separate Parameters over two storages (`tgt.U` shares
`src.V`, `tgt.V` shares `src.U`): each has its own gradient and Adam moments, and the optimiser
steps the sources' group and then the targets' group, both updating the shared storage
(`spd_core.train.step.adamw`). FSDP2 gives every Parameter a storage of its own, so under fsdp a
tied factor has two sharded copies. They hold the same rows of C on a rank (dim-0 shards of two
(C, ·) tensors of one shape), and the optimiser keeps them equal with the unsharded arithmetic:
the sources' group steps, its rows are copied into the targets' shards, the targets' group steps
on them, and the result is copied back. The copies are local: no communication.
"""

from __future__ import annotations

from collections.abc import Callable, Iterable

import torch
from torch import Tensor
from torch.distributed.tensor import DTensor

from spd_core.model.component_model import ComponentModel
from spd_core.train.parallel.sharding import local_part


def sharded_tie_pairs(model: ComponentModel) -> list[tuple[Tensor, Tensor]]:
    """(source factor, tied target factor) of every tied pair whose factors are FSDP shards;
    [] when the components are not sharded (there the factors share storage)."""
    components = model.components_by_name()
    pairs = []
    for src, tgt in model.tied_components:
        a, b = components[src], components[tgt]
        if isinstance(b.U, DTensor):
            pairs += [(a.V, b.U), (a.U, b.V)]
    return pairs


class TiedShardsAdamW(torch.optim.AdamW):
    """AdamW over `adamw`'s two groups (untied and sources first, tied targets second) that
    keeps each tied target's shards equal to its source's, as if they shared storage."""

    def __init__(self, groups: list[dict], pairs: list[tuple[Tensor, Tensor]], **kwargs: float):
        if len(groups) != 2:
            raise ValueError(f"expected the untied and the tied-target groups, got {len(groups)}")
        super().__init__(groups, **kwargs)
        self.pairs = pairs

    @torch.no_grad()
    def step(self, closure: Callable[[], float] | None = None) -> None:
        if closure is not None:
            raise ValueError("TiedShardsAdamW.step takes no closure")
        groups = self.param_groups
        try:
            self.param_groups = groups[:1]
            super().step()
            _copy_rows((src, tgt) for src, tgt in self.pairs)
            self.param_groups = groups[1:]
            super().step()
            _copy_rows((tgt, src) for src, tgt in self.pairs)
        finally:
            self.param_groups = groups


def _copy_rows(pairs: Iterable[tuple[Tensor, Tensor]]) -> None:
    """Each destination's local rows ← its source's (same rows of C on this rank)."""
    for source, destination in pairs:
        local_part(destination).copy_(local_part(source))
