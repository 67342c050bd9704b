"""Attribution graphs of one input: how much each active component of one decomposed module
drives each active component of a later one, and the output (see docs/algorithm.md)."""

from spd_core.attribution.compute import compute_attributions
from spd_core.attribution.graph import (
    AttributionError,
    AttributionGraph,
    AttributionNode,
    AttributionSpec,
)
from spd_core.attribution.pruning import prune_edges

__all__ = [
    "AttributionError",
    "AttributionGraph",
    "AttributionNode",
    "AttributionSpec",
    "compute_attributions",
    "prune_edges",
]
