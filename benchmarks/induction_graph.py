"""Whether the induction components that benchmarks/induction_mechanism.py names are among the
strongest nodes of the attribution graph of one repeated-span sequence.

    python benchmarks/induction_graph.py STORE [--seed 0] [--top 3] [--batches 8]
        [--mechanism-seed 123]

The sequence is the induction target's task (random tokens, a span, more random tokens, the same
span again), drawn with --seed as the graph page's benchmark (graph_latency.py) draws it. Its
graph is computed in-process (spd_core.attribution, every module, the decomposition's CI
threshold, no output node, no pruning); a node's strength is the sum of |attribution| over all
its edges, in and out, and nodes are ranked by it (1 = strongest). The named components are each
module's --top by mean CI at induction or source positions, as induction_mechanism.py ranks them
on its seeded batches. One JSON line per figure: the graph's size, then each named component's
rank (0 when it is not active in this sequence) and strength, then how many are in the top 10,
20 and 50 nodes.
"""

from __future__ import annotations

import argparse
import sys

import torch
from induction_mechanism import batches_of, mean_ci_and_ce
from jsonl import emit

from spd_core.attribution import AttributionSpec, compute_attributions
from spd_core.loading import load_decomposition
from spd_core.targets.induction.data import InductionData


def induction_data(spec: dict) -> InductionData:
    return InductionData(spec["vocab_size"], spec["seq_len"], spec["span_min"], spec["span_max"])


def repeated_span(spec: dict, seed: int) -> list[int]:
    """One sequence of the induction target's task, drawn with `seed`."""
    return induction_data(spec).sample(1, torch.Generator().manual_seed(seed)).tokens[0].tolist()


def main() -> None:
    parser = argparse.ArgumentParser(
        description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter
    )
    parser.add_argument("store")
    parser.add_argument("--seed", type=int, default=0, help="the graph's sequence")
    parser.add_argument("--top", type=int, default=3, help="named components per module")
    parser.add_argument("--batches", type=int, default=8, help="batches of 64 sequences")
    parser.add_argument("--mechanism-seed", type=int, default=123, help="their seed")
    args = parser.parse_args()

    decomposition = load_decomposition(args.store)
    model = decomposition.model
    spec = decomposition.target_spec["spec"]
    if spec.get("kind") != "induction":
        raise SystemExit(f"{args.store} does not decompose the induction target")
    means, _ = mean_ci_and_ce(
        model, batches_of(induction_data(spec), args.batches, args.mechanism_seed)
    )
    named = [
        (module, c)
        for module, ci in means.items()
        for c in torch.maximum(ci["induction"], ci["source"])
        .argsort(descending=True)[: args.top]
        .tolist()
    ]

    tokens = torch.tensor([repeated_span(spec, args.seed)])
    threshold = decomposition.config.ci_alive_threshold
    with torch.enable_grad():
        graph = compute_attributions(model, tokens, AttributionSpec(threshold=threshold))
    strength = torch.zeros(len(graph.nodes), dtype=torch.float64)
    magnitude = torch.from_numpy(graph.attributions).abs().double()
    strength.index_add_(0, torch.from_numpy(graph.edge_sources).long(), magnitude)
    strength.index_add_(0, torch.from_numpy(graph.edge_targets).long(), magnitude)
    order = strength.argsort(descending=True).tolist()
    rank = {(graph.nodes[i].module, graph.nodes[i].component): r + 1 for r, i in enumerate(order)}
    emit("graph/nodes", len(graph.nodes), "nodes")
    emit("graph/edges", len(graph.attributions), "edges")
    present = []
    for module, c in named:
        r = rank.get((module, c), 0)
        emit(f"{module}/{c}/rank", r, f"of {len(graph.nodes)} nodes (0: not active)")
        if r:
            index = order[r - 1]
            emit(f"{module}/{c}/strength", float(strength[index]), "sum |attribution|")
            present.append(f"{module}:{c}")
    for k in (10, 20, 50):
        hits = sum(1 for m, c in named if 0 < rank.get((m, c), 0) <= k)
        emit(f"named_in_top{k}", hits, f"of {len(named)} named components")
    strongest = [f"{graph.nodes[i].module}:{graph.nodes[i].component}" for i in order[:10]]
    print("strongest nodes: " + ", ".join(strongest), file=sys.stderr)
    print("named and active (for pinned=): " + ",".join(present), file=sys.stderr)


if __name__ == "__main__":
    main()
