"""What an attribution graph request asks for, and what it answers: nodes and weighted edges."""

from __future__ import annotations

from collections.abc import Sequence
from dataclasses import dataclass
from typing import Literal

import numpy as np

OutputTarget = Literal["none", "logit", "loss"]


class AttributionError(ValueError):
    """A request the graph cannot be computed for (unknown module, order, position, index)."""


@dataclass(frozen=True)
class AttributionSpec:
    """Which graph to compute for one input.

    `sources`, `targets`: module paths (None = the defaults: every decomposed module as a
    source, every one after the first source as a target). `positions`: flat positions of the
    input whose activations count (None = all; a toy input has the single position 0).
    `output`: the output node: none, `logit` (output[p, logit_index] summed over the positions)
    or `loss` (causal LMs: next-token cross-entropy summed over the positions that have a next
    token). `threshold`: a component is active at a position when its CI is strictly above it.
    `max_edges` (None = all) and `min_abs_attribution` prune the edges (see prune_edges).
    """

    threshold: float
    sources: Sequence[str] | None = None
    targets: Sequence[str] | None = None
    positions: Sequence[int] | None = None
    output: OutputTarget = "none"
    logit_index: int | None = None
    max_edges: int | None = None
    min_abs_attribution: float = 0.0


@dataclass(frozen=True)
class AttributionNode:
    """One active component (or, with `module` None, the output node).

    `max_ci`: its largest lower CI over the selected positions; `active_positions`: at how many
    of them its CI is above the threshold (output node: 0 and 0)."""

    module: str | None
    component: int
    max_ci: float
    active_positions: int


@dataclass
class AttributionGraph:
    """Nodes (graph modules in forward order, components ascending; the output node last when
    there is one) and edges, strongest |attribution| first.

    `edge_sources`, `edge_targets`: int64 (E,) node indices; `attributions`: float32 (E,).
    `n_candidate_edges`: non-zero edges before pruning. `module_order`: every decomposed module
    in forward order. `positions`: the positions summed over."""

    nodes: list[AttributionNode]
    edge_sources: np.ndarray
    edge_targets: np.ndarray
    attributions: np.ndarray
    n_candidate_edges: int
    module_order: list[str]
    positions: list[int]
    threshold: float
