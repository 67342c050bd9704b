"""`spd query graph NAME INPUTS | --text ... | --token-ids ...`: the attribution graph of one input,
printed as a table of its strongest edges, or as JSON (--json to stdout, --out to a file)."""

from __future__ import annotations

import argparse
import json
from pathlib import Path
from typing import TYPE_CHECKING, Any

if TYPE_CHECKING:
    from spd_client import AttributionGraph, AttributionNode, Client


def add_graph_parser(queries: argparse._SubParsersAction, common: argparse.ArgumentParser) -> None:
    g = queries.add_parser(
        "graph",
        help="attribution graph of one input (strongest edges)",
        description=(
            "Attribution graph of one input: how much each active component of a decomposed "
            "module drives each active component of later modules and the output (gradient of "
            "the target's CI-weighted activation times the source's activation, summed over the "
            "positions). Prints the strongest edges; --json prints the whole graph, --out writes "
            "it to a file."
        ),
        parents=[common],
    )
    g.add_argument("name")
    g.add_argument("inputs", nargs="?", help="toy models: .npy file or JSON list, one input")
    g.add_argument("--text", help="language models: text, tokenized on the server")
    g.add_argument("--token-ids", help="language models: comma-separated token ids")
    g.add_argument("--sources", nargs="*", default=[], help="source modules (default all)")
    g.add_argument(
        "--targets",
        nargs="*",
        default=[],
        help="target modules (default all after the first source)",
    )
    g.add_argument("--positions", default="", help="comma-separated positions summed over (all)")
    out = g.add_mutually_exclusive_group()
    out.add_argument("--logit", type=int, metavar="K", help="output node: logit K")
    out.add_argument(
        "--loss", action="store_true", help="output node: next-token loss (causal LMs)"
    )
    out.add_argument("--no-output", action="store_true", help="no output node")
    g.add_argument(
        "--threshold",
        type=float,
        help="CI above which a component is active (default: the "
        "decomposition's ci_alive_threshold)",
    )
    g.add_argument("--max-edges", type=int, default=0, help="keep the N strongest edges (0: all)")
    g.add_argument("--min-abs", type=float, default=0.0, help="drop edges with |attribution| below")
    g.add_argument("--rows", type=int, default=20, help="edges printed in the table (default 20)")
    g.add_argument("--out", type=Path, help="write the graph as JSON to this file")


def _label(node: AttributionNode) -> str:
    if node.module is None:
        return "output (loss)" if node.component < 0 else f"output (logit {node.component})"
    return f"{node.module}:{node.component}"


def graph_json(graph: AttributionGraph) -> dict[str, Any]:
    """The graph as plain JSON: nodes, then edges as [source, target, attribution]."""
    return {
        "output": graph.output,
        "threshold": graph.threshold,
        "positions": graph.positions,
        "module_order": graph.module_order,
        "token_ids": graph.ids,
        "tokens": graph.tokens,
        "candidate_edges": graph.candidate_edges,
        "nodes": [
            {
                "module": n.module,
                "component": n.component,
                "max_ci": n.max_ci,
                "active_positions": n.active_positions,
            }
            for n in graph.nodes
        ],
        "edges": [
            [int(s), int(t), float(v)]
            for s, t, v in zip(graph.sources, graph.targets, graph.attributions, strict=True)
        ],
    }


def graph_table(graph: AttributionGraph, rows: int) -> list[str]:
    """A summary line and the `rows` strongest edges."""
    lines = []
    if graph.tokens:
        lines.append(f"tokens {graph.tokens}")
    lines.append(
        f"{len(graph.nodes)} nodes (CI > {graph.threshold:g} at positions "
        f"{_positions(graph.positions)}), {len(graph.attributions)} edges of "
        f"{graph.candidate_edges} non-zero, output: {graph.output}"
    )
    shown = list(zip(graph.sources, graph.targets, graph.attributions, strict=True))[:rows]
    width = max([len(_label(graph.nodes[s])) for s, _, _ in shown] + [6])
    lines.append(f"{'rank':>4}  {'attribution':>12}  {'source':<{width}}  target")
    lines += [
        f"{i:>4}  {v:>12.5g}  {_label(graph.nodes[s]):<{width}}  {_label(graph.nodes[t])}"
        for i, (s, t, v) in enumerate(shown, 1)
    ]
    return lines


def _positions(positions: list[int]) -> str:
    runs = positions == list(range(positions[0], positions[-1] + 1)) if positions else False
    return f"{positions[0]}..{positions[-1]}" if runs and len(positions) > 2 else str(positions)


def run_graph_query(client: Client, args: argparse.Namespace) -> tuple[Any, list[str]]:
    """Fetch the graph; (JSON, table lines); --out writes the JSON to a file too."""
    from services.commands.query import _indices, _load_inputs
    from spd_client.tensor_codec import DTYPES

    given = [v for v in (args.inputs, args.text, args.token_ids) if v is not None]
    if len(given) != 1:
        raise ValueError("give exactly one of INPUTS, --text or --token-ids")
    inputs = None
    if args.inputs is not None:
        dtype = DTYPES[client.get_decomposition(args.name).input_dtype]
        inputs = _load_inputs(args.inputs, dtype)
    output = "loss" if args.loss else "none" if args.no_output else None
    graph = client.compute_attributions(
        args.name,
        inputs,
        args.text,
        None if args.token_ids is None else _indices(args.token_ids),
        sources=args.sources,
        targets=args.targets,
        positions=_indices(args.positions),
        output=output,
        logit_index=args.logit,
        threshold=args.threshold,
        max_edges=args.max_edges,
        min_abs_attribution=args.min_abs,
    )
    result = graph_json(graph)
    lines = graph_table(graph, args.rows)
    if args.out is not None:
        args.out.write_text(json.dumps(result))
        lines.append(f"wrote the graph ({len(graph.attributions)} edges) to {args.out}")
    return result, lines
