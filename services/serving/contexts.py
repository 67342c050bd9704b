"""GetComponentContexts: where a language-model component is most causally important: its
harvest's top examples when the store has a complete harvest, else a search of a fixed held-out
slice of its corpus (spd_core.text.contexts.top_contexts on the first eval windows). The two
are separate steps: the harvest's read may run on any thread, the search uses the model."""

from __future__ import annotations

from services.serving import validation
from services.serving.catalog import Catalog
from services.serving.errors import exhausted, invalid, unavailable_store
from services.serving.limits import Limits
from spd_client.generated.spd.v1 import decomposition_service_pb2 as pb
from spd_core.config import HFTargetConfig
from spd_core.text.contexts import top_contexts
from spd_core.text.corpora import CorpusError
from spd_core.text.windows import eval_windows

DEFAULT_K = 10
DEFAULT_WINDOWS = 16


def context_counts(
    catalog: Catalog, limits: Limits, request: pb.GetComponentContextsRequest
) -> tuple[int, int]:
    """Validate the request (before any work); (k, n_windows) with their defaults filled."""
    name = request.decomposition
    store = catalog.store(name)
    if not catalog.is_text(name):
        raise invalid(
            f"decomposition {name!r} is not a language model: component contexts need text "
            "(a decomposition whose describe shows text_model)"
        )
    (module,) = validation.modules([request.module], list(store.modules), name)
    validation.components([request.component], store.modules[module].C, module)
    if request.k < 0 or request.n_windows < 0:
        raise invalid(f"k and n_windows must be >= 0, got {request.k} and {request.n_windows}")
    n_windows = request.n_windows or DEFAULT_WINDOWS
    if n_windows > limits.max_context_windows:
        raise exhausted(
            f"n_windows {n_windows} exceeds this server's limit of {limits.max_context_windows}"
        )
    return request.k or DEFAULT_K, n_windows


def searched_contexts(
    catalog: Catalog, request: pb.GetComponentContextsRequest, k: int, n_windows: int
) -> pb.GetComponentContextsResponse:
    """Load the model, tokenize the held-out windows and rank the component's CI (a validated
    request of a decomposition without a complete harvest)."""
    name = request.decomposition
    loaded = catalog.load(name)
    target = loaded.config.target
    assert isinstance(target, HFTargetConfig)
    try:
        windows = eval_windows(loaded.tokenizer, target.data, n_windows)
    except CorpusError as err:
        raise unavailable_store(
            f"decomposition {name!r}: its corpus cannot be read: {err}"
        ) from None
    found = top_contexts(
        loaded.model, loaded.tokenizer, windows, request.module, request.component, k=k
    )
    return pb.GetComponentContextsResponse(
        corpus=str(target.data.corpus),
        n_windows=n_windows,
        contexts=[
            pb.ComponentContext(
                importance=c.importance,
                window=c.window,
                position=c.position,
                token=c.token,
                before=c.before,
                after=c.after,
            )
            for c in found
        ],
    )
