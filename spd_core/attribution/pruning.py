"""Keep the strongest edges of an attribution graph."""

from __future__ import annotations

import numpy as np


def prune_edges(
    sources: np.ndarray,
    targets: np.ndarray,
    values: np.ndarray,
    max_edges: int | None = None,
    min_abs: float = 0.0,
) -> np.ndarray:
    """Indices of the edges kept, strongest first: non-zero, |value| >= `min_abs`, then the
    `max_edges` largest |value| (None = all). Ties of |value| go to the smaller source index,
    then the smaller target index."""
    magnitude = np.abs(values)
    candidates = np.flatnonzero((magnitude > 0) & (magnitude >= min_abs))
    order = np.lexsort((targets[candidates], sources[candidates], -magnitude[candidates]))
    kept = candidates[order]
    return kept if max_edges is None else kept[:max_edges]
