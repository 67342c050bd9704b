"""`/d/{name}/prompt?text=...`: the prompt playground. The prompt's tokens shaded by L0 (how many
components are important at each, summed over modules); the most important components at the
chosen token, per module, with their harvest tokens and label, to select; the answer of the
model with the selection kept or ablated (or under CI, rounded-CI or stochastic masks) beside
the target's, the divergence at each position, and how the answer changed since the last press;
and the `spd export` command that takes the selection away. Toys take their input vector (x=) or
token ids (ids=) instead of a text. Everything is computed here from the URL through the same
RPCs as the JSON API (the shown next tokens are Ablate's)."""

from __future__ import annotations

import json
import shlex
from collections.abc import Sequence
from dataclasses import dataclass

import grpc
import numpy as np

from services.explorer.harvest_index import Row
from services.explorer.page_errors import bad_parameter
from services.explorer.rpc import Rpc
from services.explorer.state import ExplorerState
from services.explorer.svg_plots import bar_chart
from services.explorer.views.component import component_url, shade
from services.explorer.views.playground_answer import (
    ablate_request,
    answer_of,
    changes,
    describe,
    divergence_level,
)
from services.explorer.views.playground_inputs import (
    EXAMPLE_TEXT,
    input_kind,
    model_input,
    presets,
    vocab_of,
)
from services.explorer.views.playground_query import (
    PromptQuery,
    Selection,
    component_values,
    ordered,
    parse_query,
    prompt_url,
)
from services.serving.errors import RequestError
from spd_client.generated.spd.v1 import decomposition_service_pb2 as pb
from spd_client.tensor_codec import from_proto, to_proto

LISTED_PER_MODULE = 8
"""Components listed per module at the chosen token (the most important, CI > 0)."""
TOKENS_PER_COMPONENT = 4
"""Harvest input tokens (by precision) shown beside each listed component."""


@dataclass(frozen=True)
class TokenCell:
    position: int
    text: str
    l0: int
    level: int
    """0..10: its L0 against the prompt's largest (the template's class ci-<level>)."""
    url: str
    chosen: bool


@dataclass(frozen=True)
class Listed:
    """One component at the chosen token."""

    module: str
    index: int
    ci: float
    level: int
    important: bool
    """CI above the decomposition's threshold (it counts towards L0)."""
    selected: bool
    url: str
    tokens: tuple[tuple[str, float], ...]
    """Its most precise input tokens from the harvest (none without one)."""
    label: str
    """Its label, else its token summary ("" without a harvest)."""
    labelled: bool


@dataclass(frozen=True)
class ModuleList:
    module: str
    important: int
    components: list[Listed]


def l0_threshold(d: pb.Decomposition) -> float:
    """The CI above which a component counts as important (the config's ci_alive_threshold)."""
    config = json.loads(d.config_json) if d.config_json else {}
    return float(config.get("ci_alive_threshold", 0.1))


def check_selection(selection: Selection, modules: dict[str, int], key: str) -> Selection:
    """The selection with every module and index checked against the decomposition (400)."""
    for module, indices in selection.items():
        if module not in modules:
            raise bad_parameter(
                f"{key}: there is no module {module!r}; the modules are {', '.join(modules)}"
            )
        c = modules[module]
        wrong = [i for i in indices if i >= c]
        if wrong:
            raise bad_parameter(
                f"{key}: module {module!r} has {c} components (0..{c - 1}); there is no {wrong[0]}"
            )
    return ordered(selection, list(modules))


def export_command(store_path: str, name: str, selection: Selection) -> str:
    """The `spd export` command that writes the target without the selected components."""
    parts = ["spd", "export", store_path]
    for value in component_values(selection):
        parts += ["--ablate", value]
    parts += ["--out", f"{name}-edited"]
    return shlex.join(parts)


async def _importances(
    rpc: Rpc, name: str, kind: str, q: PromptQuery, fed: object
) -> tuple[list[str], dict[str, np.ndarray]]:
    request = pb.ComputeImportancesRequest(
        decomposition=name, selection=pb.Selection(dense=pb.Dense())
    )
    if kind == "text":
        request.text = str(fed)
    else:
        request.inputs.CopyFrom(to_proto(fed))  # type: ignore[arg-type]
    response = await rpc.call("ComputeImportances", request)
    ci = {}
    for entry in response.importances:
        values = from_proto(entry.values)
        ci[entry.module] = values if kind == "text" else values[0].reshape(-1, values.shape[-1])
    if kind == "text":
        strings = [s.replace("\n", "⏎") for s in response.tokens.strings]
    elif kind == "ids":
        strings = [str(i) for i in q.ids or ()]
    else:
        strings = ["input"]
    return strings, ci


async def _harvest_rows(
    state: ExplorerState, name: str
) -> tuple[dict[tuple[str, int], Row], str | None]:
    """{(module, component): its harvest row}, or ({}, why) without a harvest."""
    try:
        index = await state.index(name)
    except RequestError as err:
        if err.code == grpc.StatusCode.FAILED_PRECONDITION:
            return {}, err.message
        raise
    return {(r.module, r.component): r for r in index.rows}, None


def _listed(
    name: str,
    module: str,
    index: int,
    ci: float,
    threshold: float,
    selection: Selection,
    rows: dict[tuple[str, int], Row],
) -> Listed:
    row = rows.get((module, index))
    label = row.interpretation.shown_label if row else ""
    return Listed(
        module,
        index,
        ci,
        shade(ci),
        ci > threshold,
        index in selection.get(module, ()),
        component_url(name, module, index),
        row.top_tokens[:TOKENS_PER_COMPONENT] if row else (),
        label,
        bool(row and row.interpretation.label),
    )


async def playground(
    rpc: Rpc, state: ExplorerState, name: str, pairs: Sequence[tuple[str, str]]
) -> dict:
    q = parse_query(pairs)
    d = await rpc.call("GetDecomposition", pb.GetDecompositionRequest(name=name))
    kind = input_kind(d)
    modules = {m.name: int(m.c) for m in d.modules}
    selected = check_selection(q.selected, modules, "c")
    q = q.with_changes(
        selected=selected, was_selected=check_selection(q.was_selected, modules, "was_c")
    )
    page: dict = {
        "d": d,
        "kind": kind,
        "q": q,
        "selected_values": component_values(selected),
        "module_ranks": {m: r for r, m in enumerate(modules)},
        "presets": presets(d, kind, q),
        "example_text": EXAMPLE_TEXT,
        "export": export_command(d.store_path, name, selected),
        "export_prefix": shlex.join(["spd", "export", d.store_path]),
        "export_suffix": shlex.join(["--out", f"{name}-edited"]),
        "vocab": vocab_of(d),
        "input_value": "",
        "tokens": [],
    }
    if kind == "vector":
        page["input_value"] = ",".join(f"{v:g}" for v in q.x) if q.x is not None else ""
    elif kind == "ids":
        page["input_value"] = ",".join(map(str, q.ids)) if q.ids is not None else ""
    if not q.has_input:
        return page
    fed = model_input(d, kind, q)
    strings, ci = await _importances(rpc, name, kind, q, fed)
    n_positions = len(strings)
    if q.pos is not None and q.pos >= n_positions:
        raise bad_parameter(
            f"pos={q.pos} is past the last position ({n_positions - 1}) of this input"
        )
    pos = n_positions - 1 if q.pos is None else q.pos
    threshold = l0_threshold(d)
    l0 = sum((values > threshold).sum(-1) for values in ci.values()).astype(int).tolist()
    top_l0 = max(max(l0), 1)
    page["tokens"] = [
        TokenCell(
            i,
            s,
            l0[i],
            round(10 * l0[i] / top_l0),
            prompt_url(name, q.with_changes(pos=i)),
            i == pos,
        )
        for i, s in enumerate(strings)
    ]
    rows, no_harvest = await _harvest_rows(state, name)
    lists = []
    shown: set[tuple[str, int]] = set()
    for module, values in ci.items():
        row = values[pos]
        order = [int(i) for i in np.argsort(-row, kind="stable")[:LISTED_PER_MODULE] if row[i] > 0]
        shown.update((module, i) for i in order)
        lists.append(
            ModuleList(
                module,
                int((row > threshold).sum()),
                [_listed(name, module, i, float(row[i]), threshold, selected, rows) for i in order],
            )
        )
    elsewhere = [
        _listed(name, m, i, float(ci[m][pos, i]), threshold, selected, rows)
        for m, indices in selected.items()
        for i in indices
        if (m, i) not in shown
    ]
    current = ablate_request(name, kind, q, fed, q.mode, selected)
    response = await rpc.call("Ablate", current)
    answer = answer_of(response, kind, q.k, describe(q.mode, selected, q))
    per_position = (  # (samples, positions)
        from_proto(response.position_divergence)[:, 0]
        if response.HasField("position_divergence")
        else None
    )
    previous = None
    if q.was_mode is not None and (q.was_mode, q.was_selected) != (q.mode, selected):
        was_request = ablate_request(name, kind, q, fed, q.was_mode, q.was_selected)
        was_response = await rpc.call("Ablate", was_request)
        previous = answer_of(was_response, kind, q.k, describe(q.was_mode, q.was_selected, q))
    output_labels = [f"output {i}" for i in range(len(answer.target_output))]
    divergence_rows = []
    plot = None
    if per_position is not None:
        mean = per_position.mean(0)
        divergence_rows = [
            (strings[i], float(v), divergence_level(float(v))) for i, v in enumerate(mean)
        ]
        plot = bar_chart(
            mean.tolist(),
            f"{answer.divergence_type.upper()} to the target at each position",
            [f"{i} {s}" for i, s in enumerate(strings)],
            x_label="position",
        )
    page.update(
        {
            "pos": pos,
            "chosen": strings[pos],
            "l0_threshold": threshold,
            "lists": lists,
            "elsewhere": elsewhere,
            "no_harvest": no_harvest,
            "answer": answer,
            "previous": previous,
            "changes": changes(previous, answer, output_labels) if previous else [],
            "divergence_rows": divergence_rows,
            "divergence_plot": plot,
            "input_values": list(q.x) if kind == "vector" and q.x is not None else [],
            "output_labels": output_labels,
        }
    )
    return page
