"""Subtract components from a target's weights: W ← W − Σ_{c chosen} u_c v_cᵀ, per module.

With the delta component, a module under an ABLATE mask computes
(h ⊙ (m − 1)) U + x Wᵀ + b = x (W − Σ_{m_c = 0} u_c v_cᵀ)ᵀ + b (`Components.forward`), so a target
whose weights are edited this way gives exactly the served ablation's outputs.
"""

from __future__ import annotations

from collections.abc import Mapping, Sequence
from dataclasses import dataclass

import torch
from torch import Tensor, nn

from spd_core.edit.selection import EditError
from spd_core.model.components import ModuleKind, as_stored_weight, module_kind, rank_one_sum
from spd_core.store import FactorStore


@dataclass(frozen=True)
class RemovedComponents:
    """What an edit removed from one module. Norms are Frobenius norms: of each component's
    u_c v_cᵀ (= ‖u_c‖ ‖v_c‖), of the module's weight before the edit, and of the sum removed.
    `untied`: the weight was shared with another module (a tied LM head and embedding) and
    now is the edited module's own, so the other keeps the original."""

    module: str
    kind: ModuleKind
    C: int
    components: list[int]
    component_norms: list[float]
    weight_norm: float
    removed_norm: float
    untied: bool


def removed_weight(U: Tensor, V: Tensor, kind: ModuleKind) -> Tensor:
    """Σ_c u_c v_cᵀ of the chosen rows U (k, d_out), V (k, d_in), oriented as the module's
    `weight` parameter: nn.Linear (d_out, d_in), nn.Embedding (vocab, d_emb), Conv1D
    (d_in, d_out); the same product the component model forms (`rank_one_sum`)."""
    return as_stored_weight(rank_one_sum(U, V, kind), kind)


def _shared(target: nn.Module, weight: Tensor) -> bool:
    return sum(p is weight for _, p in target.named_parameters(remove_duplicate=False)) > 1


@torch.no_grad()
def subtract_components(
    target: nn.Module, store: FactorStore, selection: Mapping[str, Sequence[int]]
) -> list[RemovedComponents]:
    """Edit `target` in place: each selected module's weight loses its chosen components (a
    checked selection, `check_selection`). A weight shared with another module is first given to
    the edited module as its own copy."""
    removed = []
    for module, components in selection.items():
        layer = target.get_submodule(module)
        kind = module_kind(layer)
        stored = store.modules[module].kind
        if kind != stored:
            raise EditError(
                f"{module} is a {type(layer).__name__} ({kind}) in the target, but the store "
                f"decomposed it as {stored}: the target is not the model the store was made from"
            )
        U = torch.from_numpy(store.U(module, components)).to(layer.weight.device)
        V = torch.from_numpy(store.V(module, components)).to(layer.weight.device)
        delta = removed_weight(U.double(), V.double(), kind)
        if tuple(delta.shape) != tuple(layer.weight.shape):
            raise EditError(
                f"{module}: the store's factors give a {tuple(delta.shape)} weight, the target's "
                f"is {tuple(layer.weight.shape)}: the target is not the model the store was made from"
            )
        untied = _shared(target, layer.weight)
        if untied:
            layer.weight = nn.Parameter(layer.weight.detach().clone(), requires_grad=False)
        weight_norm = layer.weight.double().norm().item()
        layer.weight.sub_(delta.to(layer.weight.dtype))
        removed.append(
            RemovedComponents(
                module=module,
                kind=kind,
                C=store.modules[module].C,
                components=list(components),
                component_norms=(U.double().norm(dim=1) * V.double().norm(dim=1)).tolist(),
                weight_norm=weight_norm,
                removed_norm=delta.norm().item(),
                untied=untied,
            )
        )
    return removed
