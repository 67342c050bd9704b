"""The Ray Serve deployment: one method per RPC, thin around QueryHandlers, and the HTTP
ingress of the same application (services/explorer: the JSON API and the pages call these
methods, so gRPC and HTTP share one catalog, batching, limits and token).

Each method receives the raw request bytes (see wire.py), authenticates the call, parses the
bytes, runs the handler, and turns a refusal into its gRPC status (and anything unexpected into
INTERNAL with a short message: tracebacks stay in the server log). The standard health service
(grpc.health.v1.Health: Check, List; Watch is UNIMPLEMENTED) is answered without a token.
ComputeImportances requests that arrive together are answered by one batched forward; a request
that arrives alone runs at once, without waiting for the batch window. Harvest calls
(ListComponents, GetComponentSummary, GetComponentContexts' harvest read) run on a small thread
pool, so that a harvest being opened or read does not hold up the other calls on the replica's
event loop; they touch no model (a contexts search without a harvest runs on the loop).
"""

from __future__ import annotations

import asyncio
import functools
import inspect
import logging
import os
from collections.abc import AsyncIterator, Callable, Mapping
from concurrent.futures import ThreadPoolExecutor
from typing import Any, TypeVar

import grpc
import torch
from grpc_health.v1 import health_pb2
from ray import serve
from ray.serve.grpc_util import RayServegRPCContext

from services.explorer.http_app import build_http_app
from services.serving import health
from services.serving.attributions import attribution_stream
from services.serving.auth import TOKEN_ENV, check_bearer
from services.serving.catalog import Catalog
from services.serving.component_stats import component_summary, harvest_contexts, list_components
from services.serving.contexts import context_counts, searched_contexts
from services.serving.errors import RequestError, unimplemented
from services.serving.handlers import ImportanceJob, QueryHandlers
from services.serving.limits import Limits
from services.serving.lone_calls import LoneCallGate
from services.serving.wire import parse
from spd_client.generated.spd.v1 import decomposition_service_pb2 as pb
from spd_client.generated.spd.v1 import harvest_pb2 as hpb
from spd_core.store.location import Location

logger = logging.getLogger("ray.serve")
Response = TypeVar("Response")
HARVEST_THREADS = 4  # harvest calls answered at once, off the event loop
BATCH_METADATA = "spd-batch-requests"  # trailing metadata: requests answered by the same forward


class StreamRefused(Exception):
    """Ends a response stream whose status was set on the call's context."""


def _set_status(context: RayServegRPCContext, err: Exception, method: str) -> None:
    if isinstance(err, RequestError):
        context.set_code(err.code)
        context.set_details(err.message)
        return
    logger.exception("%s failed", method)
    context.set_code(grpc.StatusCode.INTERNAL)
    context.set_details(
        f"internal error in {method} ({type(err).__name__}); the server log has the details"
    )


@serve.deployment(name="DecompositionService", max_ongoing_requests=64)
@serve.ingress(build_http_app)
class DecompositionServer:
    """Serves the stores in `stores` ({name: path or location}). `token` (or $SPD_SERVE_TOKEN) makes every
    call but the health service's need `authorization: Bearer <token>`; `max_batch_size` 1 turns
    batching off (each call runs its own forward, without going through `@serve.batch`);
    `verify` reads and checks every store's files against its manifest before serving;
    `harvest_cache` False reopens each harvest on every call and answers harvest calls on the
    event loop, as the server did before (benchmarks/serve_harvest_load.py measures both)."""

    def __init__(
        self,
        stores: Mapping[str, str | Location],
        token: str | None = None,
        limits: dict[str, int] | None = None,
        max_loaded: int = 4,
        max_batch_size: int = 32,
        batch_wait_timeout_s: float = 0.002,
        torch_threads: int = 1,
        verify: bool = False,
        harvest_cache: bool = True,
    ) -> None:
        torch.set_num_threads(torch_threads)
        catalog = Catalog(stores, max_loaded, verify=verify, harvest_cache=harvest_cache)
        self.handlers = QueryHandlers(catalog, Limits(**(limits or {})))
        self.token = token or os.environ.get(TOKEN_ENV) or None
        self._batched_importances.set_max_batch_size(max_batch_size)
        self._batched_importances.set_batch_wait_timeout_s(batch_wait_timeout_s)
        self._importance_calls = LoneCallGate()
        self._batching = max_batch_size > 1
        self._harvest_pool = (
            ThreadPoolExecutor(HARVEST_THREADS, thread_name_prefix="spd-harvest")
            if harvest_cache
            else None
        )

    async def _off_loop(self, fn: Callable[..., Response], *args: Any) -> Response:
        """`fn(*args)` on the harvest thread pool (inline when there is none)."""
        if self._harvest_pool is None:
            return fn(*args)
        loop = asyncio.get_running_loop()
        return await loop.run_in_executor(self._harvest_pool, functools.partial(fn, *args))

    async def _answer(
        self,
        context: RayServegRPCContext,
        method: str,
        empty: Callable[[], Response],
        answer: Callable[[], Any],
        authenticate: bool = True,
    ) -> Response:
        try:
            if authenticate:
                check_bearer(context.invocation_metadata(), self.token)
            result = answer()
            return await result if inspect.isawaitable(result) else result
        except Exception as err:
            _set_status(context, err, method)
            return empty()

    async def ListDecompositions(
        self, request: bytes, grpc_context: RayServegRPCContext
    ) -> pb.ListDecompositionsResponse:
        return await self._answer(
            grpc_context,
            "ListDecompositions",
            pb.ListDecompositionsResponse,
            lambda: self.handlers.list_decompositions(parse(request, pb.ListDecompositionsRequest)),
        )

    async def GetDecomposition(
        self, request: bytes, grpc_context: RayServegRPCContext
    ) -> pb.Decomposition:
        return await self._answer(
            grpc_context,
            "GetDecomposition",
            pb.Decomposition,
            lambda: self.handlers.get_decomposition(parse(request, pb.GetDecompositionRequest)),
        )

    async def ComputeImportances(
        self, request: bytes, grpc_context: RayServegRPCContext
    ) -> pb.ComputeImportancesResponse:
        async def answer() -> pb.ComputeImportancesResponse:
            job = self.handlers.importance_job(
                parse(request, pb.ComputeImportancesRequest),
                self.handlers.limits.max_inputs,
                "split the batch over several requests or use StreamImportances",
            )
            async with self._importance_calls.enter() as alone:
                if alone or not self._batching:
                    (ci,), batched = self.handlers.compute([job]), 1
                else:
                    ci, batched = await self._batched_importances(job)
            grpc_context.set_trailing_metadata([(BATCH_METADATA, str(batched))])
            return self.handlers.importances_response(job, ci)

        return await self._answer(
            grpc_context, "ComputeImportances", pb.ComputeImportancesResponse, answer
        )

    @serve.batch(max_batch_size=32, batch_wait_timeout_s=0.002)
    async def _batched_importances(self, jobs: list[ImportanceJob]) -> list[tuple[dict, int]]:
        return [(ci, len(jobs)) for ci in self.handlers.compute(jobs)]

    async def StreamImportances(
        self, request: bytes, grpc_context: RayServegRPCContext
    ) -> AsyncIterator[pb.ImportancesChunk]:
        try:
            check_bearer(grpc_context.invocation_metadata(), self.token)
            for chunk in self.handlers.stream(parse(request, pb.StreamImportancesRequest)):
                yield chunk
        except Exception as err:
            _set_status(grpc_context, err, "StreamImportances")
            raise StreamRefused(grpc_context.details()) from None

    async def Ablate(self, request: bytes, grpc_context: RayServegRPCContext) -> pb.AblateResponse:
        return await self._answer(
            grpc_context,
            "Ablate",
            pb.AblateResponse,
            lambda: self.handlers.ablate(parse(request, pb.AblateRequest)),
        )

    async def GetComponents(
        self, request: bytes, grpc_context: RayServegRPCContext
    ) -> pb.GetComponentsResponse:
        return await self._answer(
            grpc_context,
            "GetComponents",
            pb.GetComponentsResponse,
            lambda: self.handlers.get_components(parse(request, pb.GetComponentsRequest)),
        )

    async def GetComponentContexts(
        self, request: bytes, grpc_context: RayServegRPCContext
    ) -> pb.GetComponentContextsResponse:
        async def answer() -> pb.GetComponentContextsResponse:
            catalog = self.handlers.catalog
            parsed = parse(request, pb.GetComponentContextsRequest)
            k, n_windows = context_counts(catalog, self.handlers.limits, parsed)
            found = await self._off_loop(harvest_contexts, catalog, parsed, k)
            return found if found is not None else searched_contexts(catalog, parsed, k, n_windows)

        return await self._answer(
            grpc_context, "GetComponentContexts", pb.GetComponentContextsResponse, answer
        )

    async def ListComponents(
        self, request: bytes, grpc_context: RayServegRPCContext
    ) -> hpb.ListComponentsResponse:
        return await self._answer(
            grpc_context,
            "ListComponents",
            hpb.ListComponentsResponse,
            lambda: self._off_loop(
                list_components,
                self.handlers.catalog,
                self.handlers.limits,
                parse(request, hpb.ListComponentsRequest),
            ),
        )

    async def GetComponentSummary(
        self, request: bytes, grpc_context: RayServegRPCContext
    ) -> hpb.GetComponentSummaryResponse:
        return await self._answer(
            grpc_context,
            "GetComponentSummary",
            hpb.GetComponentSummaryResponse,
            lambda: self._off_loop(
                component_summary,
                self.handlers.catalog,
                parse(request, hpb.GetComponentSummaryRequest),
            ),
        )

    async def ComputeAttributions(
        self, request: bytes, grpc_context: RayServegRPCContext
    ) -> AsyncIterator[pb.AttributionChunk]:
        try:
            check_bearer(grpc_context.invocation_metadata(), self.token)
            parsed = parse(request, pb.ComputeAttributionsRequest)
            for chunk in attribution_stream(self.handlers.catalog, self.handlers.limits, parsed):
                yield chunk
        except Exception as err:
            _set_status(grpc_context, err, "ComputeAttributions")
            raise StreamRefused(grpc_context.details()) from None

    # ------------------------------------------------------------------ grpc.health.v1.Health
    async def Check(
        self, request: bytes, grpc_context: RayServegRPCContext
    ) -> health_pb2.HealthCheckResponse:
        return await self._answer(
            grpc_context,
            "Check",
            health_pb2.HealthCheckResponse,
            lambda: health.check(parse(request, health_pb2.HealthCheckRequest)),
            authenticate=False,
        )

    async def List(
        self, request: bytes, grpc_context: RayServegRPCContext
    ) -> health_pb2.HealthListResponse:
        return await self._answer(
            grpc_context,
            "List",
            health_pb2.HealthListResponse,
            lambda: health.list_statuses(parse(request, health_pb2.HealthListRequest)),
            authenticate=False,
        )

    async def Watch(
        self, request: bytes, grpc_context: RayServegRPCContext
    ) -> AsyncIterator[health_pb2.HealthCheckResponse]:
        """UNIMPLEMENTED, which the health protocol lets a server answer (clients then poll
        Check): a Watch stream would hold one of a replica's request slots forever."""
        try:
            parse(request, health_pb2.HealthCheckRequest)
            raise unimplemented("Watch is not offered by this server; poll Check instead")
        except RequestError as err:
            _set_status(grpc_context, err, "Watch")
            raise StreamRefused(grpc_context.details()) from None
        yield  # an async generator, as Serve expects of a streaming method
