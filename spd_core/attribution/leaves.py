"""The target's forward with the component activations of chosen modules as gradient leaves.

Each chosen module's output x Wᵀ + b is rewritten as a·U + r with a = xV (its component
activations) and r = x Wᵀ + b − a·U (bias and the delta component's term). In the forward the
value is unchanged; for gradients, `a` is replaced by a detached leaf and `r` is held fixed, so
the module's output depends on upstream only through its own leaves. A gradient from one
module's activations to an earlier module's leaves is therefore its direct effect: the paths
through other chosen modules are cut (they are nodes of the graph themselves), while everything
else (residual stream, attention, norms, nonlinearities, modules not chosen) stays live.
"""

from __future__ import annotations

from collections.abc import Callable, Sequence
from dataclasses import dataclass

import torch
from torch import Tensor, nn

from spd_core.model.component_model import ComponentModel, extract_output


@dataclass
class LeafPass:
    """The model's output and, per chosen module, its component activations computed from its
    (live) input, `pre` (…, C), and the detached leaves, `leaves` (…, C), used downstream."""

    output: Tensor
    pre: dict[str, Tensor]
    leaves: dict[str, Tensor]


def leaf_forward(model: ComponentModel, x: Tensor, modules: Sequence[str]) -> LeafPass:
    """Run the target on `x` (with gradients on) with every module in `modules` split into its
    component activations as above."""
    named = dict(model.target.named_modules())
    pre: dict[str, Tensor] = {}
    leaves: dict[str, Tensor] = {}

    def make_hook(name: str) -> Callable:
        comp = model.components_of(name)
        U, V = comp.U.detach(), comp.V.detach()

        def hook(module: nn.Module, args: tuple, output: Tensor) -> Tensor:
            inp = args[0]
            if comp.kind == "embedding":
                acts = nn.functional.embedding(inp, V.T)
            else:
                acts = inp.to(V.dtype) @ V.T
            leaf = acts.detach().requires_grad_(True)
            pre[name], leaves[name] = acts, leaf
            rest = output.detach() - (acts.detach() @ U).to(output.dtype)
            return (leaf @ U).to(output.dtype) + rest

        return hook

    handles = [named[name].register_forward_hook(make_hook(name)) for name in modules]
    try:
        with torch.enable_grad():
            output = extract_output(model.target(x), model.output_attr)
    finally:
        for handle in handles:
            handle.remove()
    return LeafPass(output, pre, leaves)
