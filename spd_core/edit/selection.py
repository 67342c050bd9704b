"""Which components an edit removes: checked against the store before any work."""

from __future__ import annotations

from collections.abc import Mapping, Sequence

from spd_core.store import FactorStore


class EditError(ValueError):
    """An edit that cannot be made as asked; the message says what to change."""


def check_selection(
    store: FactorStore, selection: Mapping[str, Sequence[int]]
) -> dict[str, list[int]]:
    """{module: sorted distinct component indices}, in the store's module order; EditError when
    nothing is selected, a module is not in the store (the error lists the store's modules), or
    an index lies outside [0, C)."""
    if not any(len(indices) for indices in selection.values()):
        raise EditError("no components selected: name at least one, e.g. MODULE:1,2")
    unknown = [m for m in selection if m not in store.modules]
    if unknown:
        raise EditError(
            f"module {unknown[0]!r} is not decomposed in {store.path}; its modules are: "
            + ", ".join(store.modules)
        )
    out = {}
    for module in store.modules:
        indices = sorted({int(i) for i in selection.get(module, ())})
        if not indices:
            continue
        C = store.modules[module].C
        outside = [i for i in indices if not 0 <= i < C]
        if outside:
            raise EditError(
                f"{module} has {C} components (indices 0 to {C - 1}); "
                f"{', '.join(map(str, outside))} {'is' if len(outside) == 1 else 'are'} out of range"
            )
        out[module] = indices
    return out
