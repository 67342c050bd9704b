"""Requests and decoded answers shared by the sync and asyncio clients (numpy in, numpy out)."""

from __future__ import annotations

from collections.abc import Iterable, Mapping, Sequence
from dataclasses import dataclass

import numpy as np

from spd_client.generated.spd.v1 import decomposition_service_pb2 as pb
from spd_client.generated.spd.v1 import harvest_pb2 as hpb
from spd_client.tensor_codec import from_proto, to_proto

MASK_MODES = {
    "keep": pb.MASK_MODE_KEEP,
    "ablate": pb.MASK_MODE_ABLATE,
    "ci": pb.MASK_MODE_CI,
    "rounded_ci": pb.MASK_MODE_ROUNDED_CI,
    "stochastic": pb.MASK_MODE_STOCHASTIC,
}
DIVERGENCES = {None: pb.DIVERGENCE_UNSPECIFIED, "mse": pb.DIVERGENCE_MSE, "kl": pb.DIVERGENCE_KL}
KINDS = {"lower": pb.IMPORTANCE_KIND_LOWER, "upper": pb.IMPORTANCE_KIND_UPPER}


@dataclass
class Importances:
    """One module's importances. Dense: values (N, C), indices None. Top-k: values (N, k),
    indices (N, k) components. Threshold: values (nnz,), indices (nnz, 2) (input, component)."""

    values: np.ndarray
    indices: np.ndarray | None


@dataclass
class ImportancesChunk:
    """Importances of inputs [start, stop) of a stream (threshold input indices from start)."""

    start: int
    stop: int
    importances: dict[str, Importances]


@dataclass
class Ablation:
    """outputs (S, N, …), target_output (N, …), divergence (S, N) of each output ('mse'/'kl')."""

    outputs: np.ndarray
    target_output: np.ndarray
    divergence: np.ndarray
    divergence_type: str


@dataclass
class TextImportances:
    """Per-token importances of one sequence: importances[module].values has one row per token
    (dense (T, C); top-k (T, k); threshold indices are (token, component))."""

    ids: list[int]
    tokens: list[str]
    importances: dict[str, Importances]


NextTokens = list[tuple[int, str, float]]
"""(id, token, probability) of the most probable next tokens, most probable first."""


@dataclass
class TextAblation:
    """Ablate on one sequence: divergence (S, 1), and at each token (S, 1, tokens); for causal
    LMs the next tokens at the last position under each of the S masks and the target's; for
    encoders the outputs instead."""

    ids: list[int]
    tokens: list[str]
    divergence: np.ndarray
    divergence_type: str
    position_divergence: np.ndarray
    next_tokens: list[NextTokens]
    target_next_tokens: NextTokens
    outputs: np.ndarray | None
    target_output: np.ndarray | None


@dataclass
class Components:
    """Rows of U (k, d_out) and V (k, d_in) of the components `indices` (k)."""

    indices: np.ndarray
    u: np.ndarray
    v: np.ndarray


def _set_input(
    request: pb.ComputeImportancesRequest | pb.AblateRequest | pb.ComputeAttributionsRequest,
    inputs: np.ndarray | None,
    text: str | None,
    token_ids: Sequence[int] | None,
) -> None:
    """Exactly one of a tensor, a text or token ids."""
    given = [
        n
        for n, v in (("inputs", inputs), ("text", text), ("token_ids", token_ids))
        if v is not None
    ]
    if len(given) != 1:
        raise ValueError(f"give exactly one of inputs, text or token_ids, got {given or 'none'}")
    if inputs is not None:
        request.inputs.CopyFrom(to_proto(np.asarray(inputs)))
    elif text is not None:
        request.text = text
    else:
        request.token_ids.ids.extend(int(i) for i in token_ids or ())


def importances_request(
    decomposition: str,
    inputs: np.ndarray | None,
    top_k: int | None = None,
    threshold: float | None = None,
    kind: str = "lower",
    modules: Iterable[str] = (),
    text: str | None = None,
    token_ids: Sequence[int] | None = None,
) -> pb.ComputeImportancesRequest:
    """Dense unless `top_k` or `threshold` is given (not both); the input is a tensor, or for
    language models a text or token ids."""
    if top_k is not None and threshold is not None:
        raise ValueError("give top_k or threshold, not both")
    if kind not in KINDS:
        raise ValueError(f"kind must be one of {sorted(KINDS)}, got {kind!r}")
    selection = pb.Selection(dense=pb.Dense())
    if top_k is not None:
        selection = pb.Selection(top_k=pb.TopK(k=top_k))
    elif threshold is not None:
        selection = pb.Selection(threshold=pb.Threshold(value=threshold))
    request = pb.ComputeImportancesRequest(
        decomposition=decomposition, selection=selection, kind=KINDS[kind], modules=list(modules)
    )
    _set_input(request, inputs, text, token_ids)
    return request


def ablate_request(
    decomposition: str,
    inputs: np.ndarray | None,
    mode: str,
    components: Mapping[str, Iterable[int]] | None = None,
    modules: Iterable[str] = (),
    use_delta: bool = False,
    n_samples: int = 1,
    seed: int = 0,
    rounding_threshold: float = 0.0,
    divergence: str | None = None,
    text: str | None = None,
    token_ids: Sequence[int] | None = None,
    top_k_tokens: int = 0,
) -> pb.AblateRequest:
    """See AblateRequest in the proto: `mode` keep | ablate | ci | rounded_ci | stochastic; the
    input is a tensor, or for language models a text or token ids."""
    if mode not in MASK_MODES:
        raise ValueError(f"mode must be one of {sorted(MASK_MODES)}, got {mode!r}")
    if divergence not in DIVERGENCES:
        raise ValueError(f"divergence must be 'mse', 'kl' or None, got {divergence!r}")
    request = pb.AblateRequest(
        decomposition=decomposition,
        top_k_tokens=top_k_tokens,
        modules=list(modules),
        mode=MASK_MODES[mode],
        components={
            m: pb.ComponentIndices(indices=[int(i) for i in idx])
            for m, idx in (components or {}).items()
        },
        use_delta=use_delta,
        n_samples=n_samples,
        seed=seed,
        rounding_threshold=rounding_threshold,
        divergence=DIVERGENCES[divergence],
    )
    _set_input(request, inputs, text, token_ids)
    return request


def components_request(
    decomposition: str, module: str, components: Iterable[int] = ()
) -> pb.GetComponentsRequest:
    return pb.GetComponentsRequest(
        decomposition=decomposition, module=module, components=[int(c) for c in components]
    )


def decode_importances(entries: Iterable[pb.ModuleImportances]) -> dict[str, Importances]:
    return {
        e.module: Importances(
            from_proto(e.values), from_proto(e.indices) if e.HasField("indices") else None
        )
        for e in entries
    }


def decode_chunk(chunk: pb.ImportancesChunk) -> ImportancesChunk:
    return ImportancesChunk(chunk.start, chunk.stop, decode_importances(chunk.importances))


def decode_ablation(response: pb.AblateResponse) -> Ablation:
    return Ablation(
        from_proto(response.outputs),
        from_proto(response.target_output),
        from_proto(response.divergence),
        {v: k for k, v in DIVERGENCES.items() if k}[response.divergence_type],
    )


def decode_components(response: pb.GetComponentsResponse) -> Components:
    return Components(
        from_proto(response.components), from_proto(response.u), from_proto(response.v)
    )


def decode_text_importances(response: pb.ComputeImportancesResponse) -> TextImportances:
    return TextImportances(
        list(response.tokens.ids),
        list(response.tokens.strings),
        decode_importances(response.importances),
    )


def _next(entry: pb.NextTokens) -> NextTokens:
    return list(zip(entry.ids, entry.strings, entry.probs, strict=True))


def decode_text_ablation(response: pb.AblateResponse) -> TextAblation:
    return TextAblation(
        ids=list(response.tokens.ids),
        tokens=list(response.tokens.strings),
        divergence=from_proto(response.divergence),
        divergence_type={v: k for k, v in DIVERGENCES.items() if k}[response.divergence_type],
        position_divergence=from_proto(response.position_divergence),
        next_tokens=[_next(e) for e in response.next_tokens],
        target_next_tokens=_next(response.target_next_tokens),
        outputs=from_proto(response.outputs) if response.HasField("outputs") else None,
        target_output=(
            from_proto(response.target_output) if response.HasField("target_output") else None
        ),
    )


ATTRIBUTION_OUTPUTS = {
    None: pb.ATTRIBUTION_OUTPUT_UNSPECIFIED,
    "none": pb.ATTRIBUTION_OUTPUT_NONE,
    "logit": pb.ATTRIBUTION_OUTPUT_LOGIT,
    "loss": pb.ATTRIBUTION_OUTPUT_LOSS,
}


@dataclass
class AttributionNode:
    """An active component (module, component), or the output node (module None; component is
    the logit index, or -1 for the loss). max_ci and active_positions over the positions."""

    module: str | None
    component: int
    max_ci: float
    active_positions: int


@dataclass
class AttributionGraph:
    """An attribution graph: nodes, and edges sources[i] -> targets[i] (node indices) with
    attributions[i], strongest |attribution| first. candidate_edges: non-zero edges before
    pruning. Text inputs: ids and tokens of the sequence (empty otherwise)."""

    nodes: list[AttributionNode]
    sources: np.ndarray
    targets: np.ndarray
    attributions: np.ndarray
    module_order: list[str]
    positions: list[int]
    threshold: float
    candidate_edges: int
    output: str
    ids: list[int]
    tokens: list[str]


def attributions_request(
    decomposition: str,
    inputs: np.ndarray | None = None,
    text: str | None = None,
    token_ids: Sequence[int] | None = None,
    sources: Iterable[str] = (),
    targets: Iterable[str] = (),
    positions: Iterable[int] = (),
    output: str | None = None,
    logit_index: int | None = None,
    threshold: float | None = None,
    max_edges: int = 0,
    min_abs_attribution: float = 0.0,
    edges_per_chunk: int = 0,
) -> pb.ComputeAttributionsRequest:
    """See ComputeAttributionsRequest in the proto: `output` none | logit | loss (None: the
    server's default; a `logit_index` alone means logit); the input is one tensor row (1, …),
    or for language models a text or token ids."""
    if output is None and logit_index is not None:
        output = "logit"
    if output not in ATTRIBUTION_OUTPUTS:
        raise ValueError(f"output must be 'none', 'logit', 'loss' or None, got {output!r}")
    if output == "logit" and logit_index is None:
        raise ValueError("output 'logit' needs a logit_index")
    request = pb.ComputeAttributionsRequest(
        decomposition=decomposition,
        source_modules=list(sources),
        target_modules=list(targets),
        positions=[int(p) for p in positions],
        output=ATTRIBUTION_OUTPUTS[output],
        logit_index=int(logit_index or 0),
        max_edges=max_edges,
        min_abs_attribution=min_abs_attribution,
        edges_per_chunk=edges_per_chunk,
    )
    if threshold is not None:
        request.threshold = threshold
    _set_input(request, inputs, text, token_ids)
    return request


def decode_attributions(chunks: Iterable[pb.AttributionChunk]) -> AttributionGraph:
    """The graph from a ComputeAttributions stream (header first, then the edges in order)."""
    chunks = list(chunks)
    header = chunks[0].header
    nodes = [
        AttributionNode(
            None if n.is_output else n.module, int(n.component), float(n.max_ci), n.active_positions
        )
        for n in header.nodes
    ]

    def joined(field: str, dtype: type) -> np.ndarray:
        parts = [from_proto(getattr(c, field)) for c in chunks if c.HasField(field)]
        return np.concatenate(parts).astype(dtype) if parts else np.zeros(0, dtype)

    return AttributionGraph(
        nodes=nodes,
        sources=joined("sources", np.int64),
        targets=joined("targets", np.int64),
        attributions=joined("attributions", np.float32),
        module_order=list(header.module_order),
        positions=list(header.positions),
        threshold=header.threshold,
        candidate_edges=header.candidate_edges,
        output={v: k for k, v in ATTRIBUTION_OUTPUTS.items() if k}[header.output],
        ids=list(header.tokens.ids),
        tokens=list(header.tokens.strings),
    )


# ----------------------------------------------------------------- harvested component statistics
ORDERS = {"frequency": hpb.COMPONENT_ORDER_FREQUENCY, "mean_ci": hpb.COMPONENT_ORDER_MEAN_CI}


LABEL_STATUSES = {
    hpb.LABEL_STATUS_UNSPECIFIED: "",
    hpb.LABEL_STATUS_LABELLED: "labelled",
    hpb.LABEL_STATUS_UNPARSED: "unparsed",
}


@dataclass
class Interpretation:
    """A component's label from `spd autointerp` (status "labelled", "unparsed" or "" for none),
    its detection score beside the shuffled-label control (NaN: not scored), and the token
    summary every harvested component has."""

    token_summary: str
    status: str = ""
    label: str = ""
    explanation: str = ""
    detection_score: float = float("nan")
    detection_control: float = float("nan")
    explainer_model: str = ""


@dataclass
class ComponentStat:
    """One component's firing statistics (mean_ci_when_firing is NaN when it never fires) and
    its interpretation."""

    module: str
    component: int
    firing_count: int
    firing_frequency: float
    mean_ci_when_firing: float
    interpretation: Interpretation | None = None


@dataclass
class ComponentPage:
    """A page of ListComponents; next_page_token is "" on the last page."""

    components: list[ComponentStat]
    next_page_token: str
    total_size: int


@dataclass
class TopExample:
    """One top example: its CI, input (text: window) and position, and for models over tokens
    the token with the text before and after it."""

    importance: float
    input: int
    position: int
    token: str
    before: str
    after: str


@dataclass
class CoactiveComponent:
    """A component that fires with the summarized one, and on how many positions."""

    module: str
    component: int
    count: int


@dataclass
class TokenStat:
    """An input token the component fires on: precision = firings on it / its occurrences,
    recall = firings on it / all the component's firings."""

    token_id: int
    token: str
    precision: float
    recall: float
    count: int


@dataclass
class LogitChange:
    """A next-token logit's mean change when the component alone is ablated."""

    token_id: int
    token: str
    change: float


@dataclass
class ComponentSummary:
    """GetComponentSummary: everything the harvest holds about one component."""

    stats: ComponentStat
    n_inputs: int
    n_positions: int
    threshold: float
    bin_edges: np.ndarray
    histogram: np.ndarray
    top_examples: list[TopExample]
    coactive_within_module: list[CoactiveComponent]
    coactive_across_modules: list[CoactiveComponent]
    tokens_by_precision: list[TokenStat]
    tokens_by_recall: list[TokenStat]
    logits_up: list[LogitChange]
    logits_down: list[LogitChange]


def list_components_request(
    decomposition: str,
    module: str | None = None,
    order: str = "frequency",
    page_size: int = 0,
    page_token: str = "",
    label_contains: str | None = None,
) -> hpb.ListComponentsRequest:
    if order not in ORDERS:
        raise ValueError(f"order must be one of {sorted(ORDERS)}, got {order!r}")
    request = hpb.ListComponentsRequest(
        decomposition=decomposition,
        order=ORDERS[order],
        page_size=page_size,
        page_token=page_token,
    )
    if module is not None:
        request.module = module
    if label_contains is not None:
        request.label_contains = label_contains
    return request


def _stat(s: hpb.ComponentStats) -> ComponentStat:
    i = s.interpretation
    interpretation = (
        Interpretation(
            i.token_summary,
            LABEL_STATUSES.get(i.status, ""),
            i.label,
            i.explanation,
            i.detection_score,
            i.detection_control,
            i.explainer_model,
        )
        if s.HasField("interpretation")
        else None
    )
    return ComponentStat(
        s.module,
        s.component,
        s.firing_count,
        s.firing_frequency,
        s.mean_ci_when_firing,
        interpretation,
    )


def decode_component_page(response: hpb.ListComponentsResponse) -> ComponentPage:
    return ComponentPage(
        [_stat(s) for s in response.components], response.next_page_token, response.total_size
    )


def decode_component_summary(response: hpb.GetComponentSummaryResponse) -> ComponentSummary:
    def coactive(entries: Iterable[hpb.CoactiveComponent]) -> list[CoactiveComponent]:
        return [CoactiveComponent(c.module, c.component, c.count) for c in entries]

    def tokens(entries: Iterable[hpb.TokenStat]) -> list[TokenStat]:
        return [TokenStat(t.token_id, t.token, t.precision, t.recall, t.count) for t in entries]

    def logits(entries: Iterable[hpb.LogitChange]) -> list[LogitChange]:
        return [LogitChange(c.token_id, c.token, c.change) for c in entries]

    return ComponentSummary(
        stats=_stat(response.stats),
        n_inputs=response.n_inputs,
        n_positions=response.n_positions,
        threshold=response.threshold,
        bin_edges=np.asarray(response.bin_edges, dtype=np.float64),
        histogram=np.asarray(response.histogram, dtype=np.int64),
        top_examples=[
            TopExample(e.importance, e.input, e.position, e.token, e.before, e.after)
            for e in response.top_examples
        ],
        coactive_within_module=coactive(response.coactive_within_module),
        coactive_across_modules=coactive(response.coactive_across_modules),
        tokens_by_precision=tokens(response.tokens_by_precision),
        tokens_by_recall=tokens(response.tokens_by_recall),
        logits_up=logits(response.logits_up),
        logits_down=logits(response.logits_down),
    )
