"""`/d/{name}/c/{module}/{index}`: one component. Its firing statistics and CI histogram; for
language models its top examples with its CI on every token of each example's window, input
tokens by precision and recall, logits up and down, and a probe box; for toys its U and V and
its CI on each one-hot input; co-active components as links."""

from __future__ import annotations

import asyncio
import itertools
from collections.abc import Mapping
from dataclasses import dataclass

import grpc
import numpy as np

from services.explorer.rpc import Rpc, RpcRefused
from services.explorer.state import ExplorerState
from services.explorer.svg_plots import bar_chart
from services.explorer.views import params
from services.explorer.views.playground_query import PromptQuery, prompt_url
from services.serving.errors import RequestError
from spd_client.generated.spd.v1 import decomposition_service_pb2 as pb
from spd_client.generated.spd.v1 import harvest_pb2 as hpb
from spd_client.generated.spd.v1 import tensor_pb2
from spd_client.tensor_codec import from_proto, to_proto

SHOWN_EXAMPLES = 10
"""Top examples shown with their whole window's CI."""


@dataclass(frozen=True)
class Token:
    text: str
    ci: float
    level: int
    """0..10: the shade of its CI (the template's class ci-<level>)."""
    firing: bool = False


@dataclass(frozen=True)
class Example:
    importance: float
    window: int
    position: int
    tokens: list[Token]


def shade(ci: float) -> int:
    return round(min(max(ci, 0.0), 1.0) * 10)


def component_url(name: str, module: str, component: int) -> str:
    return f"/d/{name}/c/{module}/{component}"


async def _window_ci(
    rpc: Rpc, name: str, module: str, component: int, ids: list[int]
) -> tuple[list[str], np.ndarray]:
    """(token strings, this component's CI on each token) of one token sequence."""
    response = await rpc.call(
        "ComputeImportances",
        pb.ComputeImportancesRequest(
            decomposition=name,
            token_ids=pb.TokenIds(ids=ids),
            modules=[module],
            selection=pb.Selection(dense=pb.Dense()),
        ),
    )
    values = from_proto(response.importances[0].values)
    return list(response.tokens.strings), values[:, component]


async def _examples(
    rpc: Rpc,
    state: ExplorerState,
    name: str,
    module: str,
    component: int,
    summary: hpb.GetComponentSummaryResponse,
) -> list[Example]:
    top = list(summary.top_examples[:SHOWN_EXAMPLES])
    index = await state.index(name)
    loaded = state.catalog.load(name)  # on the loop, as the RPCs load models: never a thread
    source = index.reader.attrs.get("source") or {}
    windows = await asyncio.to_thread(
        state.windows.get,
        name,
        loaded.tokenizer,
        source,
        loaded.config.target.data.eval_fraction,  # type: ignore[union-attr]
        [int(e.input) for e in top],
        int(index.reader.attrs["n_inputs"]),
    )
    found = [e for e in top if int(e.input) in windows]
    answers = await asyncio.gather(
        *(_window_ci(rpc, name, module, component, windows[int(e.input)]) for e in found)
    )
    return [
        Example(
            e.importance,
            int(e.input),
            int(e.position),
            [
                Token(t.replace("\n", "⏎"), float(v), shade(float(v)), i == e.position)
                for i, (t, v) in enumerate(zip(strings, ci, strict=True))
            ],
        )
        for e, (strings, ci) in zip(found, answers, strict=True)
    ]


async def _one_hot_ci(rpc: Rpc, d: pb.Decomposition, module: str, component: int):
    """The component's CI on each one-hot input of a toy with vector inputs, else None."""
    if (
        d.text_model
        or len(d.input_shape) != 1
        or d.input_dtype in (tensor_pb2.DTYPE_INT64, tensor_pb2.DTYPE_INT32)
    ):
        return None
    n = int(d.input_shape[0])
    response = await rpc.call(
        "ComputeImportances",
        pb.ComputeImportancesRequest(
            decomposition=d.name,
            inputs=to_proto(np.eye(n, dtype=np.float32)),
            modules=[module],
            selection=pb.Selection(dense=pb.Dense()),
        ),
    )
    values = from_proto(response.importances[0].values)[:, component]
    return bar_chart(
        values.tolist(),
        "CI on each one-hot input",
        [f"feature {i}" for i in range(n)],
        x_label="input feature",
    )


async def _summary(rpc: Rpc, name: str, module: str, component: int):
    """(summary, None), or (None, why) when the decomposition has no harvest."""
    try:
        request = hpb.GetComponentSummaryRequest(
            decomposition=name, module=module, component=component
        )
        return await rpc.call("GetComponentSummary", request), None
    except RpcRefused as err:
        if err.code == grpc.StatusCode.FAILED_PRECONDITION:
            return None, err.message
        raise


async def component(
    rpc: Rpc, state: ExplorerState, name: str, module: str, raw: str, query: Mapping[str, str]
) -> dict:
    d = await rpc.call("GetDecomposition", pb.GetDecompositionRequest(name=name))
    modules = {m.name: m for m in d.modules}
    params.module(module, list(modules), name)
    index = params.component_index(raw, modules[module].c, module)
    probe = params.text(query, "probe") or ""
    summary, no_harvest = await _summary(rpc, name, module, index)
    factors = await rpc.call(
        "GetComponents",
        pb.GetComponentsRequest(decomposition=name, module=module, components=[index]),
    )
    u, v = from_proto(factors.u)[0], from_proto(factors.v)[0]
    page: dict = {
        "d": d,
        "module": module,
        "index": index,
        "c": modules[module].c,
        "summary": summary,
        "no_harvest": no_harvest,
        "text": d.text_model,
        "u_norm": float(np.linalg.norm(u)),
        "v_norm": float(np.linalg.norm(v)),
        "probe": probe,
        "playground_url": prompt_url(
            name,
            PromptQuery(
                text=probe if d.text_model and probe.strip() else None,
                selected={module: (index,)},
            ),
        ),
        "examples": [],
        "histogram": None,
        "u_plot": None,
        "v_plot": None,
        "one_hot_plot": None,
        "within": [],
        "across": [],
    }
    if summary is not None:
        edges = list(summary.bin_edges)
        page["histogram"] = bar_chart(
            list(summary.histogram),
            "CI histogram (positions where it fires)",
            [f"[{a:.3g}, {b:.3g})" for a, b in itertools.pairwise(edges)],
            x_label="CI",
            log_y=True,
        )
        page["within"] = [
            (p, component_url(name, p.module, p.component)) for p in summary.coactive_within_module
        ]
        page["across"] = [
            (p, component_url(name, p.module, p.component)) for p in summary.coactive_across_modules
        ]
        if d.text_model and summary.top_examples:
            try:
                page["examples"] = await _examples(rpc, state, name, module, index, summary)
            except RequestError as err:
                page["examples_error"] = err.message
    if not d.text_model:
        page["u_plot"] = bar_chart(u.tolist(), "U (output direction)", x_label="output dim")
        page["v_plot"] = bar_chart(v.tolist(), "V (input direction)", x_label="input dim")
        page["one_hot_plot"] = await _one_hot_ci(rpc, d, module, index)
    return page
