"""`/d/{name}/graph?text=|tokens=|input=&output=&threshold=&max_edges=&edges=&min_abs=&pinned=`:
the attribution graph of one input. The view checks the query (a 400 that says what was wrong),
runs the input through `ComputeImportances` (which refuses a bad input as the graph would) to
place each active component at the position where its CI is largest, and builds the
`ComputeAttributions` request that the page's script streams from the JSON API. The script draws
what arrives and filters it (edges kept, minimum |attribution|) without asking again."""

from __future__ import annotations

import json
import math
from collections.abc import Mapping
from dataclasses import dataclass
from urllib.parse import urlencode

import numpy as np
from google.protobuf import json_format

from services.explorer.page_errors import bad_parameter
from services.explorer.rpc import Rpc
from services.explorer.views import params
from spd_client.generated.spd.v1 import decomposition_service_pb2 as pb
from spd_client.generated.spd.v1 import tensor_pb2
from spd_client.tensor_codec import from_proto, to_proto

DEFAULT_MAX_EDGES = 500
"""Edges the page fetches unless the URL says otherwise: the server keeps the strongest."""
MAX_PAGE_EDGES = 10_000
"""The most edges one page draws (a larger graph is pruned on the server first)."""
EDGES_PER_CHUNK = 250
"""Edges per streamed message: the page shows its progress message by message."""
MAX_VALUES = 4096
"""Numbers in a `tokens=` or `input=` list."""
INTEGER_DTYPES = (tensor_pb2.DTYPE_INT64, tensor_pb2.DTYPE_INT32)


@dataclass(frozen=True)
class GraphInput:
    """What the graph is computed for: the query's parameter and its value, and the request
    fields it becomes (`text`, `token_ids` or `inputs`)."""

    key: str
    raw: str
    fields: dict


def _numbers(key: str, raw: str, integer: bool) -> list:
    """Comma- (or space-) separated numbers of a `tokens=` / `input=` parameter."""
    parts = [p for p in raw.replace(",", " ").split() if p]
    if not parts:
        raise bad_parameter(f"{key} is empty: give comma-separated numbers, e.g. {key}=1,2,3")
    if len(parts) > MAX_VALUES:
        raise bad_parameter(f"{key} has {len(parts)} numbers; at most {MAX_VALUES}")
    values = []
    for part in parts:
        try:
            value = int(part) if integer else float(part)
        except ValueError:
            kind = "a whole number" if integer else "a number"
            raise bad_parameter(f"{key}: {part!r} is not {kind}") from None
        if not integer and not math.isfinite(value):
            raise bad_parameter(f"{key}: {part!r} is not a finite number")
        values.append(value)
    return values


def graph_input(query: Mapping[str, str], d: pb.Decomposition) -> GraphInput | None:
    """The input the query names (None when it names none: the page shows its form).

    Language models take `text=` or `tokens=` (token ids); toys whose input is a sequence of
    integers (e.g. induction-2l) take `tokens=`, other toys `input=` (the vector's values)."""
    given = [key for key in ("text", "tokens", "input") if key in query]
    if len(given) > 1:
        raise bad_parameter(f"give one of text, tokens or input, not {' and '.join(given)}")
    if not given:
        return None
    key, raw = given[0], query[given[0]]
    integer_toy = not d.text_model and d.input_dtype in INTEGER_DTYPES
    allowed = ("text", "tokens") if d.text_model else ("tokens",) if integer_toy else ("input",)
    if key not in allowed:
        what = "language model" if d.text_model else "toy"
        raise bad_parameter(
            f"{key}= does not fit {d.name!r}, a {what}: give "
            + " or ".join(f"{a}=" for a in allowed)
        )
    if key == "text":
        if not raw.strip():
            raise bad_parameter("text is empty: type the prompt to compute the graph of")
        params.text(query, "text")  # the length check
        return GraphInput(key, raw, {"text": raw})
    values = _numbers(key, raw, integer=key == "tokens")
    if d.text_model:
        return GraphInput(key, raw, {"token_ids": pb.TokenIds(ids=values)})
    dtype = np.int64 if integer_toy else np.float32
    tensor = to_proto(np.asarray([values], dtype=dtype))
    return GraphInput(key, raw, {"inputs": tensor})


def output_node(raw: str | None, d: pb.Decomposition) -> tuple[int, int]:
    """(AttributionOutput, logit index) of `output=`: `loss` (causal LMs; their default),
    `logit:ID` with ID in [0, output size), or `none` (the default of the others)."""
    size = int(d.vocab_size) if d.text_model else int(d.output_shape[-1]) if d.output_shape else 0
    if raw is None or raw == "":
        raw = "loss" if d.causal_lm else "none"
    if raw == "none":
        return pb.ATTRIBUTION_OUTPUT_NONE, 0
    if raw == "loss":
        if not d.causal_lm:
            raise bad_parameter(
                f"output=loss: {d.name!r} is not a causal language model, so it has no "
                f"next-token loss; use output=logit:ID (ID in 0..{size - 1}) or output=none"
            )
        return pb.ATTRIBUTION_OUTPUT_LOSS, 0
    head, _, index = raw.partition(":")
    if head != "logit" or not index.isdigit():
        raise bad_parameter(f"output={raw!r} is not loss, none or logit:ID (e.g. logit:3)")
    if int(index) >= size:
        raise bad_parameter(
            f"output={raw!r}: logit index {index} is out of range; the output has {size} "
            f"entries (0..{size - 1})"
        )
    return pb.ATTRIBUTION_OUTPUT_LOGIT, int(index)


def finite(query: Mapping[str, str], key: str, minimum: float | None = None) -> float | None:
    """A finite number (at least `minimum`), or None when not given."""
    raw = query.get(key)
    if raw is None or raw == "":
        return None
    try:
        value = float(raw)
    except ValueError:
        raise bad_parameter(f"{key}={raw!r} is not a number") from None
    if not math.isfinite(value) or (minimum is not None and value < minimum):
        floor = f" >= {minimum:g}" if minimum is not None else ""
        raise bad_parameter(f"{key}={raw!r} is not a finite number{floor}")
    return value


def pinned_components(raw: str | None, modules: Mapping[str, int]) -> list[str]:
    """`pinned=module:i,...`: each a component of the decomposition, as `module:i`."""
    out: list[str] = []
    for item in (raw or "").split(","):
        if not item:
            continue
        module, _, index = item.rpartition(":")
        if module not in modules:
            raise bad_parameter(
                f"pinned={item!r}: no module {module!r}; give module:index with a module "
                f"among {', '.join(modules)}"
            )
        if not index.isdigit() or int(index) >= modules[module]:
            raise bad_parameter(
                f"pinned={item!r}: {module!r} has components 0..{modules[module] - 1}"
            )
        if f"{module}:{int(index)}" not in out:
            out.append(f"{module}:{int(index)}")
    return out


def max_ci_positions(response: pb.ComputeImportancesResponse) -> dict[str, list[float]]:
    """{"module:i": [position, CI]} of every component above the threshold of a threshold
    selection: the position where its CI is largest (the first of equals). A sequence's rows
    are its positions; a vector input has the one position 0."""
    placed: dict[str, list[float]] = {}
    for entry in response.importances:
        values = from_proto(entry.values).tolist()
        for value, coordinate in zip(values, from_proto(entry.indices).tolist(), strict=True):
            position = int(coordinate[-2])  # (position, c), (input 0, c) or (0, position, c)
            key = f"{entry.module}:{int(coordinate[-1])}"
            if key not in placed or value > placed[key][1]:
                placed[key] = [position, value]
    return placed


def position_labels(response: pb.ComputeImportancesResponse, given: GraphInput) -> list[str]:
    """A label per position: the tokens of a language model, the ids of an integer sequence,
    one label for a vector input."""
    if response.tokens.strings:
        return [s.replace("\n", "⏎") for s in response.tokens.strings]
    if given.key == "tokens":
        return given.raw.replace(",", " ").split()
    return ["input"]


def graph_url(name: str, query: Mapping[str, str]) -> str:
    """A graph page's path and query, empty values left out (the one-hot presets' links)."""
    kept = {k: v for k, v in query.items() if v not in (None, "")}
    return f"/d/{name}/graph" + (f"?{urlencode(kept)}" if kept else "")


async def graph(rpc: Rpc, name: str, query: Mapping[str, str]) -> dict:
    d = await rpc.call("GetDecomposition", pb.GetDecompositionRequest(name=name))
    modules = {m.name: int(m.c) for m in d.modules}
    config = json.loads(d.config_json) if d.config_json else {}
    given = graph_input(query, d)
    output, logit_index = output_node(query.get("output"), d)
    threshold = finite(query, "threshold")
    max_edges = params.positive_int(query, "max_edges", DEFAULT_MAX_EDGES)
    if max_edges > MAX_PAGE_EDGES:
        raise bad_parameter(
            f"max_edges={max_edges} is more than a page draws ({MAX_PAGE_EDGES}); the server "
            "keeps the strongest edges, so ask for fewer"
        )
    shown = params.positive_int(query, "edges", max_edges)
    if shown > max_edges:
        raise bad_parameter(f"edges={shown} is more than max_edges={max_edges} (those fetched)")
    min_abs = finite(query, "min_abs", minimum=0.0) or 0.0
    pinned = pinned_components(query.get("pinned"), modules)
    page: dict = {
        "d": d,
        "given": given,
        "output_value": query.get("output") or "",
        "threshold_value": query.get("threshold") or "",
        "max_edges": max_edges,
        "shown": shown,
        "min_abs": min_abs,
        "pinned": pinned,
        "integer_toy": not d.text_model and d.input_dtype in INTEGER_DTYPES,
        "input_shape": list(d.input_shape),
        "presets": [],
    }
    if given is None:
        if not d.text_model and len(d.input_shape) == 1 and not page["integer_toy"]:
            n = int(d.input_shape[0])
            page["presets"] = [
                (i, graph_url(name, {"input": ",".join("1" if j == i else "0" for j in range(n))}))
                for i in range(min(n, 10))
            ]
        return page
    tau = threshold if threshold is not None else float(config.get("ci_alive_threshold", 0.0))
    importances = await rpc.call(
        "ComputeImportances",
        pb.ComputeImportancesRequest(
            decomposition=name,
            selection=pb.Selection(threshold=pb.Threshold(value=tau)),
            **given.fields,
        ),
    )
    request = pb.ComputeAttributionsRequest(
        decomposition=name,
        output=output,
        logit_index=logit_index,
        max_edges=max_edges,
        edges_per_chunk=EDGES_PER_CHUNK,
        **given.fields,
    )
    if threshold is not None:
        request.threshold = threshold
    page.update(
        request_json=json.dumps(json_format.MessageToDict(request), separators=(",", ":")),
        placement_json=json.dumps(max_ci_positions(importances), separators=(",", ":")),
        labels_json=json.dumps(position_labels(importances, given), ensure_ascii=False),
        threshold=tau,
    )
    return page
