"""`spd query ...`: ask a running `spd serve` about its decompositions; a table or --json."""

from __future__ import annotations

import argparse
import json
import sys
from typing import TYPE_CHECKING, Any

import numpy as np

from services.commands.query_components import add_component_parsers, run_component_query
from services.commands.query_graph import add_graph_parser, run_graph_query

if TYPE_CHECKING:
    from spd_client import Client

DESCRIPTION = """\
Query a running `spd serve` (gRPC) and print a table, or JSON with --json.

  list                               served decompositions
  describe NAME                      modules, C, shapes, training metrics
  importances NAME INPUTS            causal importances (dense, --top-k K or --threshold T)
  importances NAME --text "..."      per-token importances of a language model's text
  ablate NAME INPUTS --mode MODE     outputs under masks, with the divergence from the target
  ablate NAME --text "..." --mode M  a language model's next tokens under masks (decoders)
  components NAME MODULE [-c 0,3]    rows of U and V
  list-components NAME [--order O] [--label-contains T]  components by firing frequency or mean CI, with labels (paged)
  summary NAME MODULE:INDEX          one component: label and scores, token summary, statistics, examples, partners
  graph NAME INPUTS | --text "..."   attribution graph of one input: its strongest edges

INPUTS is a .npy file holding (N, *input_shape) or a JSON list such as '[[0,0.8,0,0,0]]';
values are converted to the decomposition's input dtype. Language models take --text (tokenized
on the server) or --token-ids 1,2,3 instead of INPUTS.
"""


def _connection_options(parser: argparse.ArgumentParser, defaults: bool) -> None:
    """--address, --token, --json; without `defaults` an absent option leaves the value set
    before the query name untouched."""

    def default(value: object) -> object:
        return value if defaults else argparse.SUPPRESS

    parser.add_argument(
        "--address", default=default("127.0.0.1:50051"), help="HOST:PORT of the server"
    )
    parser.add_argument(
        "--token", default=default(None), help="bearer token, if the server requires one"
    )
    parser.add_argument(
        "--json", action="store_true", default=default(False), help="print JSON, not a table"
    )
    parser.add_argument(
        "--application",
        default=default(None),
        help="Serve application name, when the cluster runs several",
    )


def _text_options(parser: argparse.ArgumentParser) -> None:
    """INPUTS, or --text / --token-ids for language models."""
    parser.add_argument("inputs", nargs="?", help=".npy file or JSON list of inputs")
    parser.add_argument("--text", help="language models: text, tokenized on the server")
    parser.add_argument("--token-ids", help="language models: comma-separated token ids")


def add_parser(sub: argparse._SubParsersAction) -> None:
    p = sub.add_parser(
        "query",
        help="query a running spd serve (table or JSON)",
        description=DESCRIPTION,
        formatter_class=argparse.RawDescriptionHelpFormatter,
    )
    _connection_options(p, defaults=True)
    # the same options after the query name too (`spd query list --address H:P`)
    common = argparse.ArgumentParser(add_help=False)
    _connection_options(common, defaults=False)
    q = p.add_subparsers(dest="query", required=True, metavar="QUERY")
    q.add_parser("list", help="served decompositions", parents=[common])
    q.add_parser("describe", help="one decomposition in full", parents=[common]).add_argument(
        "name"
    )
    imp = q.add_parser("importances", help="causal importances of inputs", parents=[common])
    imp.add_argument("name")
    _text_options(imp)
    imp.add_argument("--top-k", type=int, help="only the k most important components per input")
    imp.add_argument("--threshold", type=float, help="only importances above this value")
    imp.add_argument("--kind", choices=["lower", "upper"], default="lower")
    abl = q.add_parser("ablate", help="outputs with components masked", parents=[common])
    abl.add_argument("name")
    _text_options(abl)
    abl.add_argument("--top-tokens", type=int, default=10, help="causal LMs: next tokens shown")
    abl.add_argument(
        "--mode", required=True, choices=["keep", "ablate", "ci", "rounded_ci", "stochastic"]
    )
    abl.add_argument(
        "--components",
        action="append",
        default=[],
        metavar="MODULE:I,J",
        help="keep/ablate these components of MODULE (repeatable)",
    )
    abl.add_argument("--modules", nargs="*", default=[], help="replaced modules (default all)")
    abl.add_argument("--delta", action="store_true", help="add the delta component")
    abl.add_argument("--samples", type=int, default=1, help="stochastic mask samples")
    abl.add_argument("--seed", type=int, default=0)
    abl.add_argument("--rounding-threshold", type=float, default=0.0)
    abl.add_argument("--divergence", choices=["mse", "kl"])
    comp = q.add_parser("components", help="rows of U and V", parents=[common])
    comp.add_argument("name")
    comp.add_argument("module")
    comp.add_argument("-c", "--components", default="", help="comma-separated indices (all)")
    add_graph_parser(q, common)
    add_component_parsers(q, common)


def _indices(text: str) -> list[int]:
    return [int(i) for i in text.split(",") if i.strip()]


def _load_inputs(text: str, dtype: np.dtype) -> np.ndarray:
    if text.endswith(".npy"):
        return np.load(text).astype(dtype)
    return np.asarray(json.loads(text), dtype=dtype)


def _row(values: np.ndarray) -> str:
    return " ".join(f"{v:.3f}" for v in np.asarray(values).reshape(-1))


def _decomposition(d: Any) -> dict[str, Any]:
    return {
        "name": d.name,
        "target": d.target,
        "store_path": d.store_path,
        "input_shape": list(d.input_shape),
        "output_shape": list(d.output_shape),
        "output_loss_type": d.output_loss_type,
        "modules": [
            {
                "name": m.name,
                "kind": m.kind,
                "C": m.c,
                "d_in": m.d_in,
                "d_out": m.d_out,
                "alive": m.alive,
                "l0": None if np.isnan(m.l0) else m.l0,
            }
            for m in d.modules
        ],
        "metrics": dict(sorted(d.metrics.items())),
    }


def _run_query(client: Client, args: argparse.Namespace) -> tuple[Any, list[str]]:
    """(JSON-able result, table lines)."""
    from services.commands.query_text import run_text_query
    from spd_client.tensor_codec import DTYPES

    if args.query == "graph":
        return run_graph_query(client, args)
    if args.query in ("list-components", "summary"):
        return run_component_query(client, args)
    if args.query == "list":
        found = [_decomposition(d) for d in client.list_decompositions()]
        lines = [
            f"{d['name']}  target {d['target']}  input {d['input_shape']}  modules "
            + ", ".join(f"{m['name']} (C={m['C']})" for m in d["modules"])
            for d in found
        ]
        return found, lines
    if args.query == "describe":
        d = _decomposition(client.get_decomposition(args.name))
        lines = [
            f"{d['name']}  target {d['target']}  store {d['store_path']}",
            f"input {d['input_shape']} -> output {d['output_shape']}  ({d['output_loss_type']})",
            "module  kind  C  d_in  d_out  alive  L0",
        ]
        lines += [
            f"{m['name']}  {m['kind']}  {m['C']}  {m['d_in']}  {m['d_out']}  {m['alive']}  "
            f"{m['l0']}"
            for m in d["modules"]
        ]
        lines += [f"  {k}  {v:.6g}" for k, v in d["metrics"].items()]
        return d, lines
    if args.query == "components":
        got = client.get_components(args.name, args.module, _indices(args.components))
        result = {"components": got.indices.tolist(), "u": got.u.tolist(), "v": got.v.tolist()}
        lines = [
            f"component {c}\n  u {_row(u)}\n  v {_row(v)}"
            for c, u, v in zip(got.indices, got.u, got.v, strict=True)
        ]
        return result, lines
    given = [v for v in (args.inputs, args.text, args.token_ids) if v is not None]
    if len(given) != 1:
        raise ValueError("give exactly one of INPUTS, --text or --token-ids")
    if args.inputs is None:
        listed = _components(args.components) if args.query == "ablate" else {}
        return run_text_query(client, args, listed)
    described = client.get_decomposition(args.name)
    x = _load_inputs(args.inputs, DTYPES[described.input_dtype])
    if args.query == "importances":
        found = client.compute_importances(args.name, x, args.top_k, args.threshold, args.kind)
        result = {
            m: {
                "values": i.values.tolist(),
                "indices": None if i.indices is None else i.indices.tolist(),
            }
            for m, i in found.items()
        }
        lines = []
        for module, imp in found.items():
            lines.append(f"{module}")
            if imp.indices is None:
                lines += [f"  input {n}: {_row(v)}" for n, v in enumerate(imp.values)]
            elif args.top_k is not None:
                lines += [
                    f"  input {n}: "
                    + " ".join(f"c{c}={v:.3f}" for c, v in zip(cs, vs, strict=True))
                    for n, (cs, vs) in enumerate(zip(imp.indices, imp.values, strict=True))
                ]
            else:
                lines += [
                    f"  input {n} c{c}: {v:.3f}"
                    for (n, c), v in zip(imp.indices, imp.values, strict=True)
                ]
        return result, lines
    components = _components(args.components)
    got = client.ablate(
        args.name,
        x,
        args.mode,
        components,
        args.modules,
        args.delta,
        args.samples,
        args.seed,
        args.rounding_threshold,
        args.divergence,
    )
    result = {
        "outputs": got.outputs.tolist(),
        "target_output": got.target_output.tolist(),
        "divergence": got.divergence.tolist(),
        "divergence_type": got.divergence_type,
    }
    lines = [f"divergence ({got.divergence_type}) per sample and input"]
    lines += [f"  sample {s}: {_row(d)}" for s, d in enumerate(got.divergence)]
    lines += [
        f"input {n}\n  target {_row(t)}\n  masked {_row(got.outputs[0, n])}"
        for n, t in enumerate(got.target_output)
    ]
    return result, lines


def _components(specs: list[str]) -> dict[str, list[int]]:
    components = {}
    for spec in specs:
        module, _, idx = spec.rpartition(":")
        components[module] = _indices(idx)
    return components


def run(args: argparse.Namespace) -> int:
    # gRPC and the generated code load here only, so the other commands run without them
    import grpc

    from spd_client import Client

    try:
        with Client(args.address, token=args.token, application=args.application) as client:
            result, lines = _run_query(client, args)
    except grpc.RpcError as err:
        print(f"spd query: error: {err.code().name}: {err.details()}", file=sys.stderr)
        return 2
    except (OSError, ValueError) as err:
        print(f"spd query: error: {err}", file=sys.stderr)
        return 2
    print(json.dumps(result, indent=2) if args.json else "\n".join(lines))
    return 0
