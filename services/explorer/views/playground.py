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
import math
import random
import shlex
from collections.abc import Iterable, Sequence
from dataclasses import dataclass

import grpc
import numpy as np
import torch

from services.explorer.harvest_index import Row
from services.explorer.page_errors import bad_parameter
from services.explorer.position_divergence import (
    DIVERGENCE_NAMES,
    by_position,
    causal_lm_by_position,
)
from services.explorer.rpc import Rpc
from services.explorer.state import ExplorerState
from services.explorer.svg_plots import bar_chart
from services.explorer.views.component import component_url, shade
from services.explorer.views.playground_query import (
    SELECTION_MODES,
    PromptQuery,
    Selection,
    component_values,
    ordered,
    parse_query,
    prompt_url,
)
from services.serving.errors import RequestError
from spd_client.generated.spd.v1 import decomposition_service_pb2 as pb
from spd_client.generated.spd.v1 import tensor_pb2
from spd_client.tensor_codec import from_proto, to_proto
from spd_core.text.tokens import top_next_tokens

LISTED_PER_MODULE = 8
"""Components listed per module at the chosen token (the most important, CI > 0)."""
TOKENS_PER_COMPONENT = 4
"""Harvest input tokens (by precision) shown beside each listed component."""
MASK_MODES = {
    "keep": pb.MASK_MODE_KEEP,
    "ablate": pb.MASK_MODE_ABLATE,
    "ci": pb.MASK_MODE_CI,
    "rounded_ci": pb.MASK_MODE_ROUNDED_CI,
    "stochastic": pb.MASK_MODE_STOCHASTIC,
}
EXAMPLE_TEXT = "The cat sat on the mat because"
"""The prompt the empty form suggests."""


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
    rank: int
    """The module's place in the decomposition (orders the selection)."""
    important: int
    components: list[Listed]


@dataclass(frozen=True)
class Prob:
    id: int
    text: str
    prob: float


@dataclass(frozen=True)
class Answer:
    """One Ablate answer: next tokens (sequence models with a vocabulary) or outputs (toys
    with a vector input), per mask sample, beside the target's; the divergence per sample."""

    description: str
    samples: list[list[Prob]]
    target: list[Prob]
    outputs: list[list[float]]
    target_output: list[float]
    divergence: list[float]
    divergence_type: str


@dataclass(frozen=True)
class Change:
    """A next token (or an output) in the answer before the last press and after it; None
    where it was not among the top tokens."""

    text: str
    before: float | None
    after: float | None

    @property
    def difference(self) -> float | None:
        if self.before is None or self.after is None:
            return None
        return self.after - self.before


@dataclass(frozen=True)
class Decoded:
    """The model input of the page's query and how its positions are named."""

    kind: str
    """'text', 'ids' (a toy over token ids) or 'vector' (a toy with an input vector)."""
    strings: list[str]
    """One name per position (tokens; one entry for a vector input)."""
    ci: dict[str, np.ndarray]
    """Per module, (positions, C) lower CI."""


def _ids_as_text() -> object:
    class IdsAsText:
        @staticmethod
        def decode(ids: Sequence[int]) -> str:
            return str(ids[0])

    return IdsAsText()


def input_kind(d: pb.Decomposition) -> str:
    """'text', 'ids' or 'vector': which editor the playground shows for `d`."""
    if d.text_model:
        return "text"
    if d.input_dtype in (tensor_pb2.DTYPE_INT64, tensor_pb2.DTYPE_INT32):
        return "ids"
    return "vector"


def vocab_of(d: pb.Decomposition) -> int:
    """A token-id toy's vocabulary: the last dimension of its output (next-token logits)."""
    return int(d.output_shape[-1]) if len(d.output_shape) >= 2 else 0


def repeated_span(seq_len: int, vocab: int) -> list[int]:
    """A sequence with one span of distinct tokens written twice, the second copy cut one token
    short so that the last position's next token is the span's last (an induction target
    answers it by copying): a fixed shuffle of the vocabulary gives the span and the fillers."""
    k = max(2, min(seq_len // 3, vocab // 2))
    order = random.Random(0).sample(range(vocab), vocab)
    span, fillers = order[:k], order[k:] or order
    first, second = 2, seq_len - k + 1
    tokens = [fillers[i % len(fillers)] for i in range(seq_len)]
    tokens[first : first + k] = span
    tokens[second:] = span[: seq_len - second]
    return tokens


def one_hot(n: int, i: int) -> tuple[float, ...]:
    return tuple(1.0 if j == i else 0.0 for j in range(n))


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


def describe(mode: str, selection: Selection, q: PromptQuery) -> str:
    """The mask of an answer in words."""
    chosen = " ".join(component_values(selection)) or "nothing"
    delta = " + delta" if q.delta else ""
    words = {
        "keep": f"keep only {chosen}{delta}",
        "ablate": f"ablate {chosen}{delta}",
        "ci": f"CI masks{delta}",
        "rounded_ci": f"rounded CI masks (CI > {q.threshold:g}){delta}",
        "stochastic": f"stochastic masks (seed {q.seed}, {q.samples} sample"
        f"{'s' if q.samples > 1 else ''}){delta}",
    }
    return words[mode]


def export_command(store_path: str, name: str, selection: Selection) -> str:
    """The `spd export` command that writes the target without the selected components."""
    parts = ["spd", "export", store_path]
    for value in component_values(selection):
        parts += ["--ablate", value]
    parts += ["--out", f"{name}-edited"]
    return shlex.join(parts)


def ablate_request(
    name: str, kind: str, q: PromptQuery, model_input: object, mode: str, selection: Selection
) -> pb.AblateRequest:
    """The AblateRequest of one answer (the JSON API's for the same URL)."""
    request = pb.AblateRequest(
        decomposition=name,
        mode=MASK_MODES[mode],  # type: ignore[arg-type]
        use_delta=q.delta,
        rounding_threshold=q.threshold if mode == "rounded_ci" else 0.0,
    )
    if mode in SELECTION_MODES:
        for module, indices in selection.items():
            request.components[module].indices.extend(indices)
    if mode == "stochastic":
        request.n_samples = q.samples
        request.seed = q.seed
    if kind == "text":
        request.text = str(model_input)
        request.top_k_tokens = q.k
    else:
        request.inputs.CopyFrom(to_proto(model_input))  # type: ignore[arg-type]
    return request


def _probs(top: Iterable[tuple[int, str, float]]) -> list[Prob]:
    return [Prob(int(i), t.replace("\n", "⏎"), float(p)) for i, t, p in top]


def answer_of(
    response: pb.AblateResponse, kind: str, k: int, description: str
) -> tuple[Answer, np.ndarray | None, np.ndarray | None]:
    """The Answer of an AblateResponse, with its outputs and target output as arrays (None for
    a causal LM, whose response carries next tokens only)."""
    divergence = from_proto(response.divergence)[:, 0].tolist()
    kind_name = DIVERGENCE_NAMES.get(response.divergence_type, "divergence")
    if response.HasField("outputs"):
        outputs, target = from_proto(response.outputs), from_proto(response.target_output)
    else:
        outputs = target = None
    if response.next_tokens:
        samples = [
            _probs(zip(n.ids, n.strings, n.probs, strict=True)) for n in response.next_tokens
        ]
        t = response.target_next_tokens
        target_probs = _probs(zip(t.ids, t.strings, t.probs, strict=True))
        return Answer(description, samples, target_probs, [], [], divergence, kind_name), None, None
    assert outputs is not None and target is not None
    if kind == "ids":  # next-token logits (S, 1, seq, vocab): the last position's top tokens
        decoder = _ids_as_text()
        samples = [
            _probs(top_next_tokens(torch.from_numpy(o[0, -1].copy()), decoder, k)) for o in outputs
        ]
        target_probs = _probs(top_next_tokens(torch.from_numpy(target[0, -1].copy()), decoder, k))
        answer = Answer(description, samples, target_probs, [], [], divergence, kind_name)
    elif kind == "vector":
        answer = Answer(
            description,
            [],
            [],
            [o[0].reshape(-1).tolist() for o in outputs],
            target[0].reshape(-1).tolist(),
            divergence,
            kind_name,
        )
    else:  # an encoder: hidden states, no next tokens
        answer = Answer(description, [], [], [], [], divergence, kind_name)
    return answer, outputs, target


def changes(before: Answer, after: Answer, labels: Sequence[str]) -> list[Change]:
    """How the first sample's next tokens (or outputs) moved from `before` to `after`: every
    token among either's top tokens, most probable now first."""
    if after.outputs:
        return [
            Change(label, b, a)
            for label, b, a in zip(labels, before.outputs[0], after.outputs[0], strict=True)
        ]
    was = {p.id: p for p in before.samples[0]} if before.samples else {}
    now = {p.id: p for p in after.samples[0]} if after.samples else {}
    rows = [Change(p.text, was[i].prob if i in was else None, p.prob) for i, p in now.items()]
    rows += [Change(p.text, p.prob, None) for i, p in was.items() if i not in now]
    return rows


def _level_of_divergence(value: float) -> int:
    """0..10 on a fixed scale (1 - e^-D), so shades compare across pages."""
    return round(10 * (1 - math.exp(-max(value, 0.0)))) if math.isfinite(value) else 10


async def _importances(
    rpc: Rpc, name: str, kind: str, q: PromptQuery, model_input: object
) -> tuple[list[str], dict[str, np.ndarray]]:
    request = pb.ComputeImportancesRequest(
        decomposition=name, selection=pb.Selection(dense=pb.Dense())
    )
    if kind == "text":
        request.text = str(model_input)
    else:
        request.inputs.CopyFrom(to_proto(model_input))  # type: ignore[arg-type]
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


def _model_input(d: pb.Decomposition, kind: str, q: PromptQuery) -> object:
    """The query's input as the RPCs take it (text, or a (1, ...) array), checked (400)."""
    if kind == "text":
        if q.x is not None or q.ids is not None:
            raise bad_parameter(
                f"{d.name!r} is a language model: give text=..., not {'x' if q.x else 'ids'}"
            )
        return q.text
    shape = [int(s) for s in d.input_shape]
    if q.text is not None:
        wants = "ids=... (comma-separated token ids)" if kind == "ids" else "x=... (numbers)"
        raise bad_parameter(f"{d.name!r} is a toy that takes no text: give {wants}")
    values = q.ids if kind == "ids" else q.x
    if kind == "ids" and q.x is not None:
        raise bad_parameter(f"{d.name!r} takes token ids: give ids=..., not x")
    if kind == "vector" and q.ids is not None:
        raise bad_parameter(f"{d.name!r} takes an input vector: give x=..., not ids")
    assert values is not None
    if len(shape) != 1 or len(values) != shape[0]:
        raise bad_parameter(
            f"{'ids' if kind == 'ids' else 'x'} has {len(values)} values; {d.name!r} takes "
            f"{'x'.join(map(str, shape))}"
        )
    if kind == "ids":
        vocab = vocab_of(d)
        bad = [i for i in values if not 0 <= i < vocab]
        if bad:
            raise bad_parameter(f"ids: {bad[0]} is not a token id of {d.name!r} (0..{vocab - 1})")
        return np.asarray([values], dtype=np.int64)
    return np.asarray([values], dtype=np.float32)


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


def presets(d: pb.Decomposition, kind: str, q: PromptQuery) -> list[tuple[str, str]]:
    """(name, URL) of example inputs: one-hot vectors, or a repeated span of token ids."""
    base = q.with_changes(text=None, x=None, ids=None, pos=None, was_mode=None, was_selected={})
    if kind == "vector" and len(d.input_shape) == 1:
        n = int(d.input_shape[0])
        return [(f"e{i}", prompt_url(d.name, base.with_changes(x=one_hot(n, i)))) for i in range(n)]
    if kind == "ids" and len(d.input_shape) == 1 and vocab_of(d) > 2:
        ids = tuple(repeated_span(int(d.input_shape[0]), vocab_of(d)))
        return [("repeated span", prompt_url(d.name, base.with_changes(ids=ids)))]
    return []


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
        "modes": list(MASK_MODES),
        "selection_modes": SELECTION_MODES,
        "selected_values": component_values(selected),
        "was_values": component_values(q.was_selected),
        "module_ranks": {m: r for r, m in enumerate(modules)},
        "presets": presets(d, kind, q),
        "example_text": EXAMPLE_TEXT,
        "export": export_command(d.store_path, name, selected),
        "export_prefix": shlex.join(["spd", "export", d.store_path]),
        "export_suffix": shlex.join(["--out", f"{name}-edited"]),
        "url": prompt_url(name, q),
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
    model_input = _model_input(d, kind, q)
    strings, ci = await _importances(rpc, name, kind, q, model_input)
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
    for rank, (module, values) in enumerate(ci.items()):
        row = values[pos]
        order = [int(i) for i in np.argsort(-row, kind="stable")[:LISTED_PER_MODULE] if row[i] > 0]
        shown.update((module, i) for i in order)
        lists.append(
            ModuleList(
                module,
                rank,
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
    current = ablate_request(name, kind, q, model_input, q.mode, selected)
    response = await rpc.call("Ablate", current)
    answer, outputs, target = answer_of(response, kind, q.k, describe(q.mode, selected, q))
    if outputs is not None and target is not None and kind != "vector":
        per_position = by_position(outputs, target, answer.divergence_type)  # type: ignore[arg-type]
    elif kind == "text" and d.causal_lm:
        per_position = causal_lm_by_position(rpc.server.handlers, current)
    else:
        per_position = None
    previous = None
    if q.was_mode is not None and (q.was_mode, q.was_selected) != (q.mode, selected):
        was_request = ablate_request(name, kind, q, model_input, q.was_mode, q.was_selected)
        was_response = await rpc.call("Ablate", was_request)
        previous = answer_of(was_response, kind, q.k, describe(q.was_mode, q.was_selected, q))[0]
    output_labels = [f"output {i}" for i in range(len(answer.target_output))]
    divergence_rows = []
    plot = None
    if per_position is not None:
        mean = per_position.mean(0)
        divergence_rows = [
            (strings[i], float(v), _level_of_divergence(float(v))) for i, v in enumerate(mean)
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
