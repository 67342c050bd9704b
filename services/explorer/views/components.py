"""`/d/{name}/components?module=&order=&q=&label=&page=`: the component table, paged on the
server, sorted by firing frequency or mean CI, filtered by module, searched by input token and
by label; with a frequency-against-rank plot per module."""

from __future__ import annotations

from collections.abc import Mapping
from urllib.parse import urlencode

import grpc

from services.explorer.rpc import Rpc
from services.explorer.state import ExplorerState
from services.explorer.svg_plots import line_chart
from services.explorer.views import params
from services.serving.errors import RequestError
from spd_client.generated.spd.v1 import decomposition_service_pb2 as pb

PAGE_SIZE = 50
ORDERS = ("frequency", "mean_ci")


def page_url(name: str, **query: str | int | None) -> str:
    """The table's URL for `query` (empty values left out)."""
    kept = {k: v for k, v in query.items() if v not in (None, "")}
    return f"/d/{name}/components" + (f"?{urlencode(kept)}" if kept else "")


async def components(rpc: Rpc, state: ExplorerState, name: str, query: Mapping[str, str]) -> dict:
    d = await rpc.call("GetDecomposition", pb.GetDecompositionRequest(name=name))
    modules = [m.name for m in d.modules]
    module = params.module(query.get("module"), modules, name)
    order = params.choice(query, "order", ORDERS, "frequency")
    token = params.text(query, "q")
    label = params.text(query, "label")
    page = params.positive_int(query, "page", 1)
    state_query = {"module": module, "order": order, "q": token, "label": label}
    base = {"d": d, "modules": modules, **state_query, "page": page}
    try:
        index = await state.index(name)
    except RequestError as err:
        if err.code != grpc.StatusCode.FAILED_PRECONDITION:
            raise
        return {**base, "no_harvest": err.message}
    rows = index.select(order, module, token, label)
    pages = max(1, -(-len(rows) // PAGE_SIZE))
    if page > pages:
        raise params.bad_parameter(f"page={page} is past the last page ({pages})")
    shown = rows[(page - 1) * PAGE_SIZE : page * PAGE_SIZE]
    plots = [
        line_chart(
            {m: (list(range(1, len(f) + 1)), f.tolist())},
            f"{m}: firing frequency by rank",
            x_label="rank",
            log_y=True,
        )
        for m in ([module] if module else modules)
        if len(f := index.rank_frequencies(m))
    ]
    return {
        **base,
        "no_harvest": None,
        "rows": shown,
        "first_rank": (page - 1) * PAGE_SIZE + 1,
        "total": len(rows),
        "pages": pages,
        "has_tokens": index.has_tokens,
        "has_labels": index.has_labels,
        "prev_url": page_url(name, **state_query, page=page - 1) if page > 1 else None,
        "next_url": page_url(name, **state_query, page=page + 1) if page < pages else None,
        "order_urls": {
            o: page_url(name, module=module, order=o, q=token, label=label) for o in ORDERS
        },
        "rank_plots": plots,
    }
