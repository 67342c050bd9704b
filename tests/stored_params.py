"""The learned parameters of a finished store, for tests that compare two runs."""

from __future__ import annotations

from pathlib import Path

import numpy as np

from spd_core.store import FactorStore


def stored_params(path: str | Path) -> dict[str, np.ndarray]:
    """`<module>/U`, `<module>/V` and `<module>/ci/<name>` of every decomposed module."""
    store = FactorStore.open(path)
    out = {}
    for module in store.modules:
        out[f"{module}/U"], out[f"{module}/V"] = store.U(module), store.V(module)
        out.update({f"{module}/ci/{k}": v for k, v in store.ci_fn_params(module).items()})
    return out
