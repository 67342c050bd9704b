"""Batch items that no masked forward can change, and the step restricted to the others.

If every decomposed module's input is exactly zero for a batch item, each replaced module outputs
its bias there — the same as the target, since h = xV = 0 and the delta term is 0 too — so every
masked forward reproduces the clean output on that item, whatever the masks. Such items add 0 to
every reconstruction loss and no gradient. Sparse toy data is mostly such items (77% of a TMS 5-2
batch, 37% of a ResidualMLP batch), so masked forwards run on the other items only and the
reconstruction means are rescaled to the whole batch; importance minimality still sees every item.
This relies on the target treating batch items independently, as every model in eval mode does.
"""

from __future__ import annotations

from torch import Tensor

from spd_core.component_model import CausalImportances, CleanPass, StepActivations


def active_rows(clean: CleanPass) -> Tensor | None:
    """Indices of batch items where some decomposed module's input is non-zero; None when that is
    every item or cannot be decided (integer inputs, or tensors whose first dim is not the batch)."""
    batch = clean.x.shape[0]
    if clean.output.shape[0] != batch:
        return None
    active: Tensor | None = None
    for name in clean.order:
        inp = clean.inputs[name]
        if not inp.is_floating_point() or inp.dim() == 0 or inp.shape[0] != batch:
            return None
        nonzero = clean.nonzero_positions(name).reshape(batch, -1).any(-1)
        active = nonzero if active is None else active | nonzero
        if bool(active.all()):
            return None
    assert active is not None
    return active.nonzero().squeeze(-1)


def restrict(
    acts: StepActivations, ci: CausalImportances, rows: Tensor
) -> tuple[StepActivations, CausalImportances]:
    """The clean pass, cached inner activations and causal importances of `rows` only (indexing
    keeps the graph: gradients reach V and the CI functions through the selected items)."""
    clean = acts.clean
    sub = CleanPass(
        clean.x[rows],
        clean.output[rows],
        {n: t[rows] for n, t in clean.inputs.items()},
        {n: t[rows] for n, t in clean.products.items()},
        clean.order,
    )
    inner = {n: h[rows] for n, h in acts.cached_inner().items()}
    sub_ci = CausalImportances(
        {n: g[rows] for n, g in ci.lower.items()}, {n: g[rows] for n, g in ci.upper.items()}
    )
    return StepActivations(acts.model, sub, inner), sub_ci
