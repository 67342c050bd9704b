"""Attribution graph of one input (definition in docs/algorithm.md, "Attribution graphs").

For a source component s of module l and a target component t of a later module l':

    A(s → t) = Σ_{p ∈ P} Σ_{q ∈ P} 1[g_t(p) > τ] 1[g_s(q) > τ] · ∂(g_t(p) a_t(p)) / ∂a_s(q) · a_s(q)

with a = xV the component activations of the target's own forward, g the lower CI (held fixed),
P the selected positions and the derivative a direct effect (leaves.py). For the output node,
g_t(p) a_t(p) is replaced by y = Σ_{p ∈ P} out[p, k] (a logit) or the next-token cross-entropy.
One batched backward per target module (one gradient row per active target component, vmapped)
gives every edge into that module from all earlier source modules.
"""

from __future__ import annotations

from collections.abc import Sequence

import numpy as np
import torch
from torch import Tensor

from spd_core.attribution.graph import (
    AttributionError,
    AttributionGraph,
    AttributionNode,
    AttributionSpec,
)
from spd_core.attribution.leaves import leaf_forward
from spd_core.attribution.pruning import prune_edges
from spd_core.model.component_model import ComponentModel

ROWS_PER_BACKWARD = 64
"""Target components whose gradients one vmapped backward computes (bounds its memory)."""


def _flat(t: Tensor) -> Tensor:
    """(…, C) -> (positions, C)."""
    return t.reshape(-1, t.shape[-1])


def graph_modules(
    order: Sequence[str], sources: Sequence[str] | None, targets: Sequence[str] | None
) -> tuple[list[str], list[str]]:
    """(sources, targets) in forward order; every named module must be decomposed and every
    target must run after at least one source. Defaults: all modules as sources; as targets,
    every module after the first source."""
    for role, names in (("source", sources), ("target", targets)):
        for name in names or ():
            if name not in order:
                raise AttributionError(
                    f"{role} module {name!r} is not decomposed; the decomposed modules, in "
                    f"forward order, are: {', '.join(order)}"
                )
    chosen_sources = [m for m in order if sources is None or m in sources]
    if not chosen_sources:
        raise AttributionError("no source modules: name at least one decomposed module")
    first = order.index(chosen_sources[0])
    if targets is None:
        return chosen_sources, list(order[first + 1 :])
    chosen_targets = [m for m in order if m in targets]
    for name in chosen_targets:
        if order.index(name) <= first:
            raise AttributionError(
                f"target module {name!r} does not run after any source module (the first source "
                f"is {chosen_sources[0]!r}); a target must come later in the forward than a "
                f"source. Forward order: {', '.join(order)}"
            )
    return chosen_sources, chosen_targets


def _positions(requested: Sequence[int] | None, n_positions: int) -> list[int]:
    if requested is None or len(requested) == 0:
        return list(range(n_positions))
    for p in requested:
        if not 0 <= p < n_positions:
            raise AttributionError(
                f"position {p} is out of range: this input has {n_positions} position(s), "
                f"0..{n_positions - 1}"
            )
    return sorted(set(int(p) for p in requested))


def _check_output(spec: AttributionSpec, x: Tensor, output: Tensor, n_positions: int) -> None:
    """The output target must be computable on this input before any gradient work."""
    if spec.output == "none":
        return
    if output.dim() < 1 or output[..., 0].numel() != n_positions:
        raise AttributionError(
            f"the model's output has shape {tuple(output.shape)}, which does not have one row "
            f"per position ({n_positions}); ask for no output node"
        )
    if spec.output == "logit":
        size = output.shape[-1]
        if spec.logit_index is None or not 0 <= spec.logit_index < size:
            raise AttributionError(
                f"logit index {spec.logit_index} is out of range: the output has {size} "
                f"entries per position, 0..{size - 1}"
            )
        return
    if x.is_floating_point() or x.shape[0] != 1 or x.dim() != 2:
        raise AttributionError(
            "the loss output needs one sequence of token ids of a causal language model"
        )


def _output_value(spec: AttributionSpec, x: Tensor, output: Tensor, positions: list[int]) -> Tensor:
    """y: the selected logit summed over the positions, or the next-token cross-entropy summed
    over the positions that have a next token."""
    rows = output.reshape(-1, output.shape[-1])
    if spec.output == "logit":
        return rows[positions, spec.logit_index].sum()
    ids = x.reshape(-1)
    with_next = [p for p in positions if p + 1 < ids.numel()]
    logits = rows[with_next].float()
    return torch.nn.functional.cross_entropy(
        logits, ids[[p + 1 for p in with_next]], reduction="sum"
    )


def compute_attributions(
    model: ComponentModel, x: Tensor, spec: AttributionSpec
) -> AttributionGraph:
    """The attribution graph of one input `x` (a batch of 1: (1, *input_shape) or token ids
    (1, seq)). Raises AttributionError for a spec this input cannot have."""
    if x.shape[0] != 1:
        raise AttributionError(f"attributions are for one input; got a batch of {x.shape[0]}")
    with torch.no_grad():
        acts = model.prepare(x)
        ci = {m: _flat(g) for m, g in model.causal_importances(acts).lower.items()}
    order = list(acts.clean.order)
    sources, targets = graph_modules(order, spec.sources, spec.targets)
    n_positions = next(iter(ci.values())).shape[0]
    positions = _positions(spec.positions, n_positions)
    _check_output(spec, x, acts.clean.output, n_positions)
    if spec.output == "loss" and not any(p + 1 < n_positions for p in positions):
        raise AttributionError(
            f"the loss needs a position with a next token; positions {positions} of a "
            f"{n_positions}-token sequence have none (the last position predicts nothing)"
        )
    graph = [m for m in order if m in set(sources) | set(targets)]
    active = {m: ci[m][positions] > spec.threshold for m in graph}  # (|P|, C)
    alive = {m: active[m].any(0).nonzero().squeeze(-1) for m in graph}

    nodes: list[AttributionNode] = []
    index: dict[str, dict[int, int]] = {}
    for m in graph:
        index[m] = {}
        for c in alive[m].tolist():
            index[m][c] = len(nodes)
            max_ci = float(ci[m][positions, c].max())
            nodes.append(AttributionNode(m, c, max_ci, int(active[m][:, c].sum())))

    run = leaf_forward(model, x, graph)
    # each source's masked activations and node ids, shared by every target's backward
    source_acts = {m: _flat(run.leaves[m].detach())[positions] * active[m] for m in sources}
    source_nodes = {
        m: np.array([index[m][c] for c in alive[m].tolist()], dtype=np.int64) for m in sources
    }
    edge_s: list[np.ndarray] = []
    edge_t: list[np.ndarray] = []
    edge_v: list[np.ndarray] = []

    def add_edges(rows: Tensor, row_nodes: Sequence[int], earlier: list[str]) -> None:
        """rows: (n,) scalars whose gradients give edges from the active components of
        `earlier` into the nodes `row_nodes`."""
        if not rows.requires_grad or not earlier:  # no path from any earlier leaf
            return
        leaves = [run.leaves[m] for m in earlier]
        n = rows.shape[0]
        for start in range(0, n, ROWS_PER_BACKWARD):
            stop = min(start + ROWS_PER_BACKWARD, n)
            seeds = torch.zeros(stop - start, n, dtype=rows.dtype, device=rows.device)
            seeds[:, start:stop] = torch.eye(stop - start, dtype=rows.dtype, device=rows.device)
            grads = torch.autograd.grad(
                rows,
                leaves,
                grad_outputs=seeds,
                is_grads_batched=True,
                retain_graph=True,
                allow_unused=True,
            )
            for m, grad in zip(earlier, grads, strict=True):
                if grad is None or len(alive[m]) == 0:
                    continue
                g = grad.reshape(stop - start, n_positions, -1)[:, positions]
                values = (g * source_acts[m]).sum(1)[:, alive[m]]  # (rows, active sources)
                src = source_nodes[m]
                tgt = np.array(row_nodes[start:stop], dtype=np.int64)
                edge_s.append(np.tile(src, stop - start))
                edge_t.append(np.repeat(tgt, len(src)))
                edge_v.append(values.reshape(-1).detach().float().cpu().numpy())

    for t in targets:
        earlier = [s for s in sources if order.index(s) < order.index(t)]
        if len(alive[t]) == 0:
            continue
        weighted = _flat(run.pre[t])[positions] * ci[t][positions] * active[t]
        rows = weighted.sum(0)[alive[t]]
        add_edges(rows, [index[t][c] for c in alive[t].tolist()], earlier)
    if spec.output != "none":
        output_node = len(nodes)
        label = spec.logit_index if spec.output == "logit" and spec.logit_index is not None else -1
        nodes.append(AttributionNode(None, label, 0.0, 0))
        y = _output_value(spec, x, run.output, positions)
        add_edges(y.reshape(1), [output_node], sources)

    s = np.concatenate(edge_s) if edge_s else np.zeros(0, np.int64)
    t_ = np.concatenate(edge_t) if edge_t else np.zeros(0, np.int64)
    v = np.concatenate(edge_v) if edge_v else np.zeros(0, np.float32)
    kept = prune_edges(s, t_, v, spec.max_edges, spec.min_abs_attribution)
    return AttributionGraph(
        nodes=nodes,
        edge_sources=s[kept].astype(np.int64),
        edge_targets=t_[kept].astype(np.int64),
        attributions=v[kept].astype(np.float32),
        n_candidate_edges=int(np.count_nonzero(v)),
        module_order=order,
        positions=positions,
        threshold=spec.threshold,
    )
