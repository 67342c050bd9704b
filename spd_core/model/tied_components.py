"""Tied components: one module's subcomponents are another's transposed (TMS, W₂ = W₁ᵀ).

A target trained with tied weights has `tgt.weight == src.weightᵀ`. The reference implementation
then ties the decompositions too (spec §5 step 2): `tgt.U` and `tgt.V` become views of `src.V` and
`src.U`, so subcomponent c of `tgt` is subcomponent c of `src` transposed. The four tensors stay
separate Parameters over two storages: each gets its own gradient and Adam state, and both updates
land on the shared storage, as in the reference. Rows are component-major here (U (C, d_out),
V (C, d_in)), so no transpose is needed: `tgt.U` shares `src.V` and `tgt.V` shares `src.U`.
"""

from __future__ import annotations

from collections.abc import Mapping, Sequence

import torch

from spd_core.model.components import Components


class TiedComponentsError(ValueError):
    """A `tied_components` pair that cannot be tied."""


def check_ties(components: Mapping[str, Components], ties: Sequence[tuple[str, str]]) -> None:
    """Raise TiedComponentsError unless every (src, tgt) pair names two distinct decomposed
    linear modules with the same C, used once each, where tgt's weight is src's transposed."""
    seen: set[str] = set()
    for src, tgt in ties:
        where = f"tied_components ({src}, {tgt})"
        if src == tgt:
            raise TiedComponentsError(f"{where}: a module cannot be tied to itself")
        for name in (src, tgt):
            if name not in components:
                raise TiedComponentsError(
                    f"{where}: '{name}' is not a decomposed module "
                    f"(decomposed: {', '.join(components)})"
                )
            if name in seen:
                raise TiedComponentsError(f"{where}: '{name}' is already in another pair")
            seen.add(name)
        a, b = components[src], components[tgt]
        if a.kind == "embedding" or b.kind == "embedding":
            raise TiedComponentsError(f"{where}: embeddings cannot be tied")
        if a.C != b.C:
            raise TiedComponentsError(f"{where}: C differs ({a.C} and {b.C})")
        if b.weight.shape != a.weight.T.shape or not torch.allclose(
            b.weight, a.weight.T.to(b.weight.device), rtol=1e-5, atol=1e-6
        ):
            raise TiedComponentsError(
                f"{where}: the target's {tgt} weight {tuple(b.weight.shape)} is not its {src} "
                f"weight {tuple(a.weight.shape)} transposed; only tied-weight targets can tie"
            )


@torch.no_grad()
def tie(components: Mapping[str, Components], ties: Sequence[tuple[str, str]]) -> None:
    """Point each tgt's U and V at src's V and U storage (tgt's own values are dropped)."""
    for src, tgt in ties:
        a, b = components[src], components[tgt]
        b.U.data = a.V.data
        b.V.data = a.U.data


def ties_hold(components: Mapping[str, Components], ties: Sequence[tuple[str, str]]) -> bool:
    """Whether every tgt still shares its factors' storage with its src."""
    return all(
        components[t].U.data_ptr() == components[s].V.data_ptr()
        and components[t].V.data_ptr() == components[s].U.data_ptr()
        for s, t in ties
    )
