"""Batch items that no masked forward can change, and a step that runs on one of them only.

If every decomposed module's input is exactly zero for a batch item, each replaced module outputs
its bias there — the same as the target, since h = xV = 0 and the delta term is 0 too — so every
masked forward reproduces the clean output on that item, whatever the masks: the item adds 0 to
every reconstruction loss and no gradient. All such items also share one causal importance. Sparse
toy data is mostly such items (77% of a TMS 5-2 batch, 37% of a ResidualMLP batch), so a step keeps
the other items plus one inert item that stands for all of them (weight = their number):
reconstruction means are rescaled to the whole batch, and importance minimality and L0 weight each
kept item by the items it stands for. Values and gradients equal the whole batch's.
This relies on the target treating batch items independently, as every model in eval mode does.
"""

from __future__ import annotations

import torch
from torch import Tensor

from spd_core.model.component_model import CleanPass, StepActivations


def representative_items(clean: CleanPass) -> tuple[Tensor, Tensor] | None:
    """(rows, weights): the items with some non-zero decomposed input, then one inert item whose
    weight is the number of inert items; None when no item is inert or that cannot be decided
    (integer inputs, or tensors whose first dim is not the batch)."""
    batch = clean.x.shape[0]
    if clean.output.shape[0] != batch:
        return None
    active: Tensor | None = None
    for name in clean.order:
        inp = clean.inputs[name]
        if not inp.is_floating_point() or inp.dim() < 2 or inp.shape[0] != batch:
            return None
        nonzero = clean.nonzero_positions(name).reshape(batch, -1).any(-1)
        active = nonzero if active is None else active | nonzero
        if bool(active.all()):
            return None
    assert active is not None
    inert = (~active).nonzero().squeeze(-1)
    rows = torch.cat([active.nonzero().squeeze(-1), inert[:1]])
    weights = torch.ones(rows.numel(), device=rows.device)
    weights[-1] = inert.numel()
    return rows, weights


def restrict(acts: StepActivations, rows: Tensor) -> StepActivations:
    """The clean pass of `rows` only (CI and inner activations are then computed on those); the
    non-zero positions found while choosing the rows are kept, not recomputed."""
    clean = acts.clean
    batch = clean.x.shape[0]
    nonzero = {
        n: m.reshape(batch, -1)[rows].reshape(-1)
        for n, m in clean.computed_nonzero_positions().items()
    }
    sub = CleanPass(
        clean.x[rows],
        clean.output[rows],
        {n: t[rows] for n, t in clean.inputs.items()},
        {n: t[rows] for n, t in clean.products.items()},
        clean.order,
        nonzero,
    )
    return StepActivations(acts.model, sub)
