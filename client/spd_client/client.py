"""Python clients of the spd query service: `Client` (blocking) and `AsyncClient` (asyncio).

    with Client("127.0.0.1:50051") as client:
        ci = client.compute_importances("resid-mlp-1", x.astype("float32"), top_k=5)
        per_token = client.text_importances("smollm2-mlp", text="The capital of France is")

Tensors come back as numpy arrays; a refused call raises grpc.RpcError with the server's status
code and message.
"""

from __future__ import annotations

from collections.abc import AsyncIterator, Iterable, Iterator, Mapping, Sequence
from typing import Any

import grpc
import numpy as np

from spd_client import messages as msg
from spd_client.generated.spd.v1 import decomposition_service_pb2 as pb
from spd_client.generated.spd.v1 import decomposition_service_pb2_grpc as pb_grpc
from spd_client.generated.spd.v1 import harvest_pb2 as hpb

CHANNEL_OPTIONS = [
    ("grpc.max_receive_message_length", 256 * 1024 * 1024),
    ("grpc.max_send_message_length", 256 * 1024 * 1024),
]


def _metadata(token: str | None, application: str | None) -> list[tuple[str, str]]:
    metadata = []
    if token:
        metadata.append(("authorization", f"Bearer {token}"))
    if application:
        metadata.append(("application", application))
    return metadata


class Client:
    """Blocking client. `token` is sent as a bearer token; `application` only matters when the
    Serve cluster runs several applications; `timeout` is per call, in seconds."""

    def __init__(
        self,
        address: str = "127.0.0.1:50051",
        token: str | None = None,
        application: str | None = None,
        timeout: float = 60.0,
    ) -> None:
        self._channel = grpc.insecure_channel(address, options=CHANNEL_OPTIONS)
        self._stub = pb_grpc.DecompositionServiceStub(self._channel)
        self._metadata = _metadata(token, application)
        self.timeout = timeout

    def __enter__(self) -> Client:
        return self

    def __exit__(self, *exc: object) -> None:
        self.close()

    def close(self) -> None:
        self._channel.close()

    def _call(self, method: str, request: object) -> object:
        return getattr(self._stub, method)(request, metadata=self._metadata, timeout=self.timeout)

    def list_decompositions(self) -> list[pb.Decomposition]:
        """Summaries (name, target, modules, input shape) of every served decomposition."""
        return list(self._call("ListDecompositions", pb.ListDecompositionsRequest()).decompositions)

    def get_decomposition(self, name: str) -> pb.Decomposition:
        """One decomposition with its config (JSON) and training metrics."""
        return self._call("GetDecomposition", pb.GetDecompositionRequest(name=name))

    def compute_importances(
        self,
        decomposition: str,
        inputs: np.ndarray,
        top_k: int | None = None,
        threshold: float | None = None,
        kind: str = "lower",
        modules: Iterable[str] = (),
    ) -> dict[str, msg.Importances]:
        """Causal importances per module: dense, or `top_k` per input, or above `threshold`."""
        request = msg.importances_request(decomposition, inputs, top_k, threshold, kind, modules)
        return msg.decode_importances(self._call("ComputeImportances", request).importances)

    def stream_importances(
        self,
        decomposition: str,
        inputs: np.ndarray,
        chunk_size: int = 0,
        top_k: int | None = None,
        threshold: float | None = None,
        kind: str = "lower",
        modules: Iterable[str] = (),
    ) -> Iterator[msg.ImportancesChunk]:
        """The same as compute_importances for large batches, `chunk_size` inputs at a time."""
        request = pb.StreamImportancesRequest(
            request=msg.importances_request(decomposition, inputs, top_k, threshold, kind, modules),
            chunk_size=chunk_size,
        )
        for chunk in self._call("StreamImportances", request):
            yield msg.decode_chunk(chunk)

    def ablate(
        self,
        decomposition: str,
        inputs: np.ndarray,
        mode: str,
        components: Mapping[str, Iterable[int]] | None = None,
        modules: Iterable[str] = (),
        use_delta: bool = False,
        n_samples: int = 1,
        seed: int = 0,
        rounding_threshold: float = 0.0,
        divergence: str | None = None,
    ) -> msg.Ablation:
        """Outputs under a mask spec (see AblateRequest), the target's, and their divergence."""
        request = msg.ablate_request(
            decomposition,
            inputs,
            mode,
            components,
            modules,
            use_delta,
            n_samples,
            seed,
            rounding_threshold,
            divergence,
        )
        return msg.decode_ablation(self._call("Ablate", request))

    def text_importances(
        self,
        decomposition: str,
        text: str | None = None,
        token_ids: Sequence[int] | None = None,
        top_k: int | None = None,
        threshold: float | None = None,
        kind: str = "lower",
        modules: Iterable[str] = (),
    ) -> msg.TextImportances:
        """Importances per token of one text (tokenized on the server) or token-id sequence."""
        request = msg.importances_request(
            decomposition, None, top_k, threshold, kind, modules, text, token_ids
        )
        return msg.decode_text_importances(self._call("ComputeImportances", request))

    def text_ablate(
        self,
        decomposition: str,
        mode: str,
        text: str | None = None,
        token_ids: Sequence[int] | None = None,
        top_k_tokens: int = 10,
        **options: Any,
    ) -> msg.TextAblation:
        """Ablate on one text or token-id sequence; `options` as in ablate (components, modules,
        use_delta, n_samples, seed, rounding_threshold, divergence)."""
        request = msg.ablate_request(
            decomposition,
            None,
            mode,
            text=text,
            token_ids=token_ids,
            top_k_tokens=top_k_tokens,
            **options,
        )
        return msg.decode_text_ablation(self._call("Ablate", request))

    def get_components(
        self, decomposition: str, module: str, components: Iterable[int] = ()
    ) -> msg.Components:
        """Rows of U and V of `components` of `module` (all when empty)."""
        request = msg.components_request(decomposition, module, components)
        return msg.decode_components(self._call("GetComponents", request))

    def get_component_contexts(
        self, decomposition: str, module: str, component: int, k: int = 10, n_windows: int = 16
    ) -> pb.GetComponentContextsResponse:
        """Language models: the k held-out contexts where `component` of `module` matters most."""
        request = pb.GetComponentContextsRequest(
            decomposition=decomposition,
            module=module,
            component=component,
            k=k,
            n_windows=n_windows,
        )
        return self._call("GetComponentContexts", request)

    def list_components(
        self,
        decomposition: str,
        module: str | None = None,
        order: str = "frequency",
        page_size: int = 0,
        page_token: str = "",
        label_contains: str | None = None,
    ) -> msg.ComponentPage:
        """One page of components with their harvested statistics and interpretations, sorted by
        "frequency" or "mean_ci" (highest first), optionally only those whose shown label
        contains `label_contains` (any case); pass the page's next_page_token for the next one."""
        request = msg.list_components_request(
            decomposition, module, order, page_size, page_token, label_contains
        )
        return msg.decode_component_page(self._call("ListComponents", request))

    def get_component_summary(
        self, decomposition: str, module: str, component: int
    ) -> msg.ComponentSummary:
        """One component's harvested statistics, top examples, co-firing components and token
        statistics."""
        request = hpb.GetComponentSummaryRequest(
            decomposition=decomposition, module=module, component=component
        )
        return msg.decode_component_summary(self._call("GetComponentSummary", request))

    def compute_attributions(
        self,
        decomposition: str,
        inputs: np.ndarray | None = None,
        text: str | None = None,
        token_ids: Sequence[int] | None = None,
        **options: Any,
    ) -> msg.AttributionGraph:
        """The attribution graph of one input (a (1, …) tensor, or a text or token ids);
        `options`: sources, targets, positions, output ('none' | 'logit' | 'loss'), logit_index,
        threshold, max_edges, min_abs_attribution, edges_per_chunk (see attributions_request)."""
        request = msg.attributions_request(decomposition, inputs, text, token_ids, **options)
        return msg.decode_attributions(self._call("ComputeAttributions", request))


class AsyncClient:
    """asyncio client with the same methods as Client, as coroutines (and an async iterator for
    stream_importances). Use it inside a running event loop."""

    def __init__(
        self,
        address: str = "127.0.0.1:50051",
        token: str | None = None,
        application: str | None = None,
        timeout: float = 60.0,
    ) -> None:
        self._channel = grpc.aio.insecure_channel(address, options=CHANNEL_OPTIONS)
        self._stub = pb_grpc.DecompositionServiceStub(self._channel)
        self._metadata = _metadata(token, application)
        self.timeout = timeout

    async def __aenter__(self) -> AsyncClient:
        return self

    async def __aexit__(self, *exc: object) -> None:
        await self.close()

    async def close(self) -> None:
        await self._channel.close()

    async def _call(self, method: str, request: object) -> object:
        return await getattr(self._stub, method)(
            request, metadata=self._metadata, timeout=self.timeout
        )

    async def list_decompositions(self) -> list[pb.Decomposition]:
        response = await self._call("ListDecompositions", pb.ListDecompositionsRequest())
        return list(response.decompositions)

    async def get_decomposition(self, name: str) -> pb.Decomposition:
        return await self._call("GetDecomposition", pb.GetDecompositionRequest(name=name))

    async def compute_importances(
        self,
        decomposition: str,
        inputs: np.ndarray,
        top_k: int | None = None,
        threshold: float | None = None,
        kind: str = "lower",
        modules: Iterable[str] = (),
    ) -> dict[str, msg.Importances]:
        request = msg.importances_request(decomposition, inputs, top_k, threshold, kind, modules)
        response = await self._call("ComputeImportances", request)
        return msg.decode_importances(response.importances)

    async def stream_importances(
        self,
        decomposition: str,
        inputs: np.ndarray,
        chunk_size: int = 0,
        top_k: int | None = None,
        threshold: float | None = None,
        kind: str = "lower",
        modules: Iterable[str] = (),
    ) -> AsyncIterator[msg.ImportancesChunk]:
        request = pb.StreamImportancesRequest(
            request=msg.importances_request(decomposition, inputs, top_k, threshold, kind, modules),
            chunk_size=chunk_size,
        )
        call = self._stub.StreamImportances(request, metadata=self._metadata, timeout=self.timeout)
        async for chunk in call:
            yield msg.decode_chunk(chunk)

    async def ablate(
        self,
        decomposition: str,
        inputs: np.ndarray,
        mode: str,
        components: Mapping[str, Iterable[int]] | None = None,
        modules: Iterable[str] = (),
        use_delta: bool = False,
        n_samples: int = 1,
        seed: int = 0,
        rounding_threshold: float = 0.0,
        divergence: str | None = None,
    ) -> msg.Ablation:
        request = msg.ablate_request(
            decomposition,
            inputs,
            mode,
            components,
            modules,
            use_delta,
            n_samples,
            seed,
            rounding_threshold,
            divergence,
        )
        return msg.decode_ablation(await self._call("Ablate", request))

    async def text_importances(
        self,
        decomposition: str,
        text: str | None = None,
        token_ids: Sequence[int] | None = None,
        top_k: int | None = None,
        threshold: float | None = None,
        kind: str = "lower",
        modules: Iterable[str] = (),
    ) -> msg.TextImportances:
        request = msg.importances_request(
            decomposition, None, top_k, threshold, kind, modules, text, token_ids
        )
        return msg.decode_text_importances(await self._call("ComputeImportances", request))

    async def text_ablate(
        self,
        decomposition: str,
        mode: str,
        text: str | None = None,
        token_ids: Sequence[int] | None = None,
        top_k_tokens: int = 10,
        **options: Any,
    ) -> msg.TextAblation:
        request = msg.ablate_request(
            decomposition,
            None,
            mode,
            text=text,
            token_ids=token_ids,
            top_k_tokens=top_k_tokens,
            **options,
        )
        return msg.decode_text_ablation(await self._call("Ablate", request))

    async def get_components(
        self, decomposition: str, module: str, components: Iterable[int] = ()
    ) -> msg.Components:
        request = msg.components_request(decomposition, module, components)
        return msg.decode_components(await self._call("GetComponents", request))

    async def get_component_contexts(
        self, decomposition: str, module: str, component: int, k: int = 10, n_windows: int = 16
    ) -> pb.GetComponentContextsResponse:
        request = pb.GetComponentContextsRequest(
            decomposition=decomposition,
            module=module,
            component=component,
            k=k,
            n_windows=n_windows,
        )
        return await self._call("GetComponentContexts", request)

    async def list_components(
        self,
        decomposition: str,
        module: str | None = None,
        order: str = "frequency",
        page_size: int = 0,
        page_token: str = "",
        label_contains: str | None = None,
    ) -> msg.ComponentPage:
        request = msg.list_components_request(
            decomposition, module, order, page_size, page_token, label_contains
        )
        return msg.decode_component_page(await self._call("ListComponents", request))

    async def get_component_summary(
        self, decomposition: str, module: str, component: int
    ) -> msg.ComponentSummary:
        request = hpb.GetComponentSummaryRequest(
            decomposition=decomposition, module=module, component=component
        )
        return msg.decode_component_summary(await self._call("GetComponentSummary", request))

    async def compute_attributions(
        self,
        decomposition: str,
        inputs: np.ndarray | None = None,
        text: str | None = None,
        token_ids: Sequence[int] | None = None,
        **options: Any,
    ) -> msg.AttributionGraph:
        request = msg.attributions_request(decomposition, inputs, text, token_ids, **options)
        call = self._stub.ComputeAttributions(
            request, metadata=self._metadata, timeout=self.timeout
        )
        return msg.decode_attributions([chunk async for chunk in call])
