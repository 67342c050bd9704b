"""ListComponents and GetComponentSummary: a decomposition's harvest (spd_core.harvest) and labels
(spd_core.interp), read from its store and translated to messages; nothing is recomputed but
the token summaries of a store without labels (from the harvest's token statistics)."""

from __future__ import annotations

import base64
import binascii
import json

from services.serving import validation
from services.serving.catalog import Catalog
from services.serving.errors import exhausted, invalid, unavailable_store
from services.serving.harvest_cache import ServedHarvest
from services.serving.limits import Limits
from spd_client.generated.spd.v1 import decomposition_service_pb2 as pb
from spd_client.generated.spd.v1 import harvest_pb2 as hpb
from spd_core.harvest import ComponentStats, ComponentSummary
from spd_core.interp import Interpretation
from spd_core.store import StoreError

DEFAULT_PAGE_SIZE = 100


def harvest_of(catalog: Catalog, name: str) -> ServedHarvest:
    """The decomposition's complete harvest; FAILED_PRECONDITION (saying to run `spd harvest`)
    when it has none, or an incomplete or damaged one."""
    try:
        return catalog.harvest(name)
    except StoreError as err:
        raise unavailable_store(f"decomposition {name!r}: {err}") from None


_STATUS = {
    "": hpb.LABEL_STATUS_UNSPECIFIED,
    "labelled": hpb.LABEL_STATUS_LABELLED,
    "unparsed": hpb.LABEL_STATUS_UNPARSED,
}


def _interpretation(i: Interpretation) -> hpb.ComponentInterpretation:
    return hpb.ComponentInterpretation(
        token_summary=i.token_summary,
        status=_STATUS[i.status],
        label=i.label,
        explanation=i.explanation,
        detection_score=i.detection_score,
        detection_control=i.detection_control,
        explainer_model=i.explainer_model,
    )


def _stats(s: ComponentStats, i: Interpretation) -> hpb.ComponentStats:
    return hpb.ComponentStats(
        module=s.module,
        component=s.component,
        firing_count=s.firing_count,
        firing_frequency=s.firing_frequency,
        mean_ci_when_firing=s.mean_ci_when_firing,
        interpretation=_interpretation(i),
    )


def _interpretation_of(served: ServedHarvest, module: str, component: int) -> Interpretation:
    try:
        return served.interpretations(module)[component]
    except StoreError as err:
        raise unavailable_store(str(err)) from None


def _page_token(offset: int, query: list) -> str:
    raw = json.dumps({"offset": offset, "query": query}).encode()
    return base64.urlsafe_b64encode(raw).decode()


def _offset(token: str, query: list) -> int:
    if not token:
        return 0
    try:
        data = json.loads(base64.urlsafe_b64decode(token.encode()))
        offset, found = int(data["offset"]), data["query"]
    except (ValueError, KeyError, TypeError, binascii.Error):
        raise invalid(
            "page_token is not a token this server gave; pass next_page_token unchanged"
        ) from None
    if found != query or offset < 0:
        raise invalid(
            "page_token belongs to another listing (decomposition, module or order differ); "
            "start again without page_token"
        )
    return offset


def list_components(
    catalog: Catalog, limits: Limits, request: hpb.ListComponentsRequest
) -> hpb.ListComponentsResponse:
    """One page of components sorted by frequency (default) or mean CI, highest first; ties in
    module order, then component index (the ranking is the harvest's, built once)."""
    name = request.decomposition
    store = catalog.store(name)
    module = request.module if request.HasField("module") else None
    if module is not None:
        validation.modules([module], list(store.modules), name)
    if request.order not in hpb.ComponentOrder.values():
        raise invalid(f"order {request.order} is not a ComponentOrder; use FREQUENCY or MEAN_CI")
    if request.page_size < 0:
        raise invalid(f"page_size must be >= 0, got {request.page_size}")
    page_size = request.page_size or min(DEFAULT_PAGE_SIZE, limits.max_page_size)
    if page_size > limits.max_page_size:
        raise exhausted(
            f"page_size {page_size} exceeds this server's limit of {limits.max_page_size}"
        )
    needle = request.label_contains.lower() if request.HasField("label_contains") else None
    query = [name, module, int(request.order) or hpb.COMPONENT_ORDER_FREQUENCY, needle]
    offset = _offset(request.page_token, query)
    served = harvest_of(catalog, name)
    rows = served.ranked(module, query[2] == hpb.COMPONENT_ORDER_MEAN_CI)

    def shown(r: ComponentStats) -> Interpretation:
        return _interpretation_of(served, r.module, r.component)

    if needle is not None:
        rows = [r for r in rows if needle in shown(r).shown_label.lower()]
    page = rows[offset : offset + page_size]
    more = offset + page_size < len(rows)
    return hpb.ListComponentsResponse(
        components=[_stats(r, shown(r)) for r in page],
        next_page_token=_page_token(offset + page_size, query) if more else "",
        total_size=len(rows),
    )


def check_component(catalog: Catalog, name: str, module: str, component: int) -> None:
    """NOT_FOUND for an unknown module; INVALID_ARGUMENT for an index outside [0, C)."""
    store = catalog.store(name)
    validation.modules([module], list(store.modules), name)
    C = store.modules[module].C
    if not 0 <= component < C:
        raise invalid(
            f"component {component} is out of range for module {module!r} of {name!r}: "
            f"it has C = {C} components (0..{C - 1})"
        )


def summary_message(s: ComponentSummary, i: Interpretation) -> hpb.GetComponentSummaryResponse:
    return hpb.GetComponentSummaryResponse(
        stats=_stats(s.stats, i),
        n_positions=s.n_positions,
        n_inputs=s.n_inputs,
        threshold=s.threshold,
        bin_edges=s.bin_edges,
        histogram=s.histogram,
        top_examples=[
            hpb.TopExample(
                importance=e.importance,
                input=e.input,
                position=e.position,
                token=e.token,
                before=e.before,
                after=e.after,
            )
            for e in s.top_examples
        ],
        coactive_within_module=[
            hpb.CoactiveComponent(module=p.module, component=p.component, count=p.count)
            for p in s.coactive_within_module
        ],
        coactive_across_modules=[
            hpb.CoactiveComponent(module=p.module, component=p.component, count=p.count)
            for p in s.coactive_across_modules
        ],
        tokens_by_precision=[hpb.TokenStat(**vars(t)) for t in s.tokens_by_precision],
        tokens_by_recall=[hpb.TokenStat(**vars(t)) for t in s.tokens_by_recall],
        logits_up=[hpb.LogitChange(**vars(c)) for c in s.logits_up],
        logits_down=[hpb.LogitChange(**vars(c)) for c in s.logits_down],
    )


def component_summary(
    catalog: Catalog, request: hpb.GetComponentSummaryRequest
) -> hpb.GetComponentSummaryResponse:
    """One component's harvested statistics, with its label and token summary."""
    check_component(catalog, request.decomposition, request.module, request.component)
    served = harvest_of(catalog, request.decomposition)
    interpretation = _interpretation_of(served, request.module, request.component)
    summary = served.reader.summary(request.module, request.component)
    return summary_message(summary, interpretation)


def harvest_contexts(
    catalog: Catalog, request: pb.GetComponentContextsRequest, k: int
) -> pb.GetComponentContextsResponse | None:
    """GetComponentContexts from the harvest's top examples, or None when there is no complete
    harvest (the caller then searches held-out windows)."""
    try:
        reader = catalog.harvest(request.decomposition).reader
    except StoreError:
        return None
    s = reader.summary(request.module, request.component)
    source = reader.attrs.get("source") or {}
    return pb.GetComponentContextsResponse(
        corpus=str(source.get("corpus", "")),
        n_windows=int(reader.attrs["n_inputs"]),
        contexts=[
            pb.ComponentContext(
                importance=e.importance,
                window=e.input,
                position=e.position,
                token=e.token,
                before=e.before,
                after=e.after,
            )
            for e in s.top_examples[:k]
        ],
        from_harvest=True,
    )
