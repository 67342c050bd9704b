"""Calling the deployment's RPC methods from HTTP: the same methods gRPC calls (so the same
parsing, authentication, batching, limits and error mapping), with a call context that records
the status they set instead of a gRPC call's."""

from __future__ import annotations

from collections.abc import AsyncIterator, Sequence
from dataclasses import dataclass
from typing import Any

import grpc
from google.protobuf.descriptor import MethodDescriptor
from google.protobuf.message import Message
from google.protobuf.message_factory import GetMessageClass

from spd_client.generated.spd.v1 import decomposition_service_pb2 as pb

SERVICE = pb.DESCRIPTOR.services_by_name["DecompositionService"]
METHODS: dict[str, MethodDescriptor] = {m.name: m for m in SERVICE.methods}
"""Every RPC of spd.v1.DecompositionService by name."""


def request_type(method: str) -> type[Message]:
    return GetMessageClass(METHODS[method].input_type)


class RpcRefused(Exception):
    """The RPC ended with a status other than OK."""

    def __init__(self, code: grpc.StatusCode, message: str) -> None:
        super().__init__(message)
        self.code = code
        self.message = message


class HttpCallContext:
    """What the deployment's methods use of Serve's RayServegRPCContext: the call's metadata
    in, the status and trailing metadata out."""

    def __init__(self, metadata: Sequence[tuple[str, str]]) -> None:
        self._metadata = tuple(metadata)
        self._code = grpc.StatusCode.OK
        self._details = ""
        self.trailing_metadata: tuple[tuple[str, str], ...] = ()

    def invocation_metadata(self) -> tuple[tuple[str, str], ...]:
        return self._metadata

    def set_code(self, code: grpc.StatusCode) -> None:
        self._code = code

    def set_details(self, details: str) -> None:
        self._details = details

    def code(self) -> grpc.StatusCode:
        return self._code

    def details(self) -> str:
        return self._details

    def set_trailing_metadata(self, metadata: Sequence[tuple[str, str]]) -> None:
        self.trailing_metadata = tuple(metadata)

    def raise_for_status(self) -> None:
        if self._code != grpc.StatusCode.OK:
            raise RpcRefused(self._code, self._details)


@dataclass
class Rpc:
    """Calls `server`'s RPC methods with `metadata` (the caller's authorization)."""

    server: Any
    metadata: Sequence[tuple[str, str]] = ()

    async def call(self, method: str, request: Message) -> Any:
        """The response of a unary RPC; RpcRefused with its status otherwise."""
        if METHODS[method].server_streaming:
            raise ValueError(f"{method} is a streaming RPC: use stream()")
        context = HttpCallContext(self.metadata)
        response = await getattr(self.server, method)(request.SerializeToString(), context)
        context.raise_for_status()
        return response

    async def stream(self, method: str, request: Message) -> AsyncIterator[Any]:
        """The messages of a streaming RPC; RpcRefused with its status where it ends early."""
        context = HttpCallContext(self.metadata)
        try:
            async for message in getattr(self.server, method)(request.SerializeToString(), context):
                yield message
        except Exception:
            if context.code() == grpc.StatusCode.OK:
                raise
        context.raise_for_status()
