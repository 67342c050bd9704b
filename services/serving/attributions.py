"""ComputeAttributions: the attribution graph of one input (spd_core.attribution), streamed as a
header with the nodes, then the edges, strongest first, in chunks."""

from __future__ import annotations

import math
from collections.abc import Iterator

import numpy as np

from services.serving import validation
from services.serving.catalog import Catalog
from services.serving.errors import exhausted, invalid
from services.serving.limits import Limits
from services.serving.text_inputs import request_input
from spd_client.generated.spd.v1 import decomposition_service_pb2 as pb
from spd_client.tensor_codec import to_proto
from spd_core.attribution import (
    AttributionError,
    AttributionGraph,
    AttributionSpec,
    compute_attributions,
)
from spd_core.attribution.graph import OutputTarget

_OUTPUTS: dict[int, OutputTarget] = {
    pb.ATTRIBUTION_OUTPUT_NONE: "none",
    pb.ATTRIBUTION_OUTPUT_LOGIT: "logit",
    pb.ATTRIBUTION_OUTPUT_LOSS: "loss",
}
_OUTPUT_CODES = {v: k for k, v in _OUTPUTS.items()}


def _output(request: pb.ComputeAttributionsRequest, causal_lm: bool) -> OutputTarget:
    """The output node: unspecified means the loss for causal LMs and none otherwise."""
    if request.output == pb.ATTRIBUTION_OUTPUT_UNSPECIFIED:
        return "loss" if causal_lm else "none"
    if request.output not in _OUTPUTS:
        raise invalid(
            f"output {request.output} is not an AttributionOutput; use ATTRIBUTION_OUTPUT_NONE, "
            "_LOGIT or _LOSS"
        )
    output = _OUTPUTS[request.output]
    if output == "loss" and not causal_lm:
        raise invalid(
            f"decomposition {request.decomposition!r} is not a causal language model, so it has "
            "no next-token loss: use ATTRIBUTION_OUTPUT_LOGIT with a logit_index, or _NONE"
        )
    if output != "logit" and request.logit_index != 0:
        raise invalid("logit_index is only used with ATTRIBUTION_OUTPUT_LOGIT")
    return output


def _numbers(request: pb.ComputeAttributionsRequest) -> None:
    """Every numeric field in its range."""
    for field in ("max_edges", "edges_per_chunk"):
        if getattr(request, field) < 0:
            raise invalid(
                f"{field} must be >= 0 (0 means the default), got {getattr(request, field)}"
            )
    if not (math.isfinite(request.min_abs_attribution) and request.min_abs_attribution >= 0):
        raise invalid(
            f"min_abs_attribution must be a finite number >= 0, got {request.min_abs_attribution}"
        )
    if request.HasField("threshold") and not math.isfinite(request.threshold):
        raise invalid("threshold must be a finite number (or unset for the decomposition's own)")
    if any(p < 0 for p in request.positions):
        raise invalid(f"positions must be >= 0, got {list(request.positions)}")


def attribution_stream(
    catalog: Catalog, limits: Limits, request: pb.ComputeAttributionsRequest
) -> Iterator[pb.AttributionChunk]:
    """Validate the request, compute the whole graph, then yield the header and edge chunks."""
    name = request.decomposition
    store = catalog.store(name)
    known = list(store.modules)
    validation.modules(request.source_modules, known, name)
    validation.modules(request.target_modules, known, name)
    _numbers(request)
    causal = bool(store.target_spec.get("causal_lm")) and catalog.is_text(name)
    output = _output(request, causal)
    x, tokens = request_input(
        request, catalog, limits.max_inputs, "attributions are computed for one input"
    )
    if len(x) != 1:
        raise invalid(
            f"attributions are for one input: send inputs of shape [1, ...], not {len(x)}"
        )
    loaded = catalog.load(name)
    spec = AttributionSpec(
        threshold=(
            request.threshold if request.HasField("threshold") else loaded.config.ci_alive_threshold
        ),
        sources=list(request.source_modules) or None,
        targets=list(request.target_modules) or None,
        positions=list(request.positions) or None,
        output=output,
        logit_index=request.logit_index if output == "logit" else None,
        max_edges=request.max_edges or None,
        min_abs_attribution=request.min_abs_attribution,
    )
    try:
        graph = compute_attributions(loaded.model, x, spec)
    except AttributionError as err:
        raise invalid(str(err)) from None
    if len(graph.attributions) > limits.max_attribution_edges:
        raise exhausted(
            f"the graph has {len(graph.attributions)} edges, over this server's limit of "
            f"{limits.max_attribution_edges}; set max_edges or min_abs_attribution"
        )
    yield from _chunks(
        graph, output, tokens, request.edges_per_chunk or limits.default_edges_per_chunk
    )


def _chunks(
    graph: AttributionGraph, output: OutputTarget, tokens: pb.Tokens | None, size: int
) -> Iterator[pb.AttributionChunk]:
    header = pb.AttributionHeader(
        nodes=[
            pb.AttributionNode(
                module=n.module or "",
                component=n.component,
                max_ci=n.max_ci,
                active_positions=n.active_positions,
                is_output=n.module is None,
            )
            for n in graph.nodes
        ],
        module_order=graph.module_order,
        positions=graph.positions,
        threshold=graph.threshold,
        candidate_edges=graph.n_candidate_edges,
        edges=len(graph.attributions),
        output=_OUTPUT_CODES[output],
    )
    if tokens is not None:
        header.tokens.CopyFrom(tokens)
    n = len(graph.attributions)
    for start in range(0, max(n, 1), size):
        chunk = pb.AttributionChunk(
            sources=to_proto(graph.edge_sources[start : start + size].astype(np.int64)),
            targets=to_proto(graph.edge_targets[start : start + size].astype(np.int64)),
            attributions=to_proto(graph.attributions[start : start + size].astype(np.float32)),
        )
        if start == 0:
            chunk.header.CopyFrom(header)
        yield chunk
