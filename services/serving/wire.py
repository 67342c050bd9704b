"""How requests reach the deployment: raw bytes, parsed by us, so that bytes which are not the
RPC's message get INVALID_ARGUMENT naming the expected type instead of gRPC's UNKNOWN.

Ray Serve's gRPC proxy (ray/serve/_private/grpc_util.py, `gRPCGenericServer`) keeps the request
deserializer of every method registered by a `grpc_servicer_functions` entry: it replaces only
the behaviour (with its routing handler) and the response serializer. grpcio runs that
deserializer before any handler, and a DecodeError there ends the call with UNKNOWN
("Unexpected <class 'google.protobuf.message.DecodeError'>: ...") that neither the proxy nor the
deployment can change. The generated `add_*Servicer_to_server` functions register
`Request.FromString`; `add_services_to_server` registers the same methods without one, so grpcio
hands the proxy the bytes, the proxy forwards them (pickled) to the deployment, and `parse`
turns them into the message or a RequestError.
"""

from __future__ import annotations

from typing import Any, Final, TypeVar

import grpc
from google.protobuf.descriptor import MethodDescriptor, ServiceDescriptor
from google.protobuf.message import DecodeError, Message
from grpc_health.v1 import health_pb2

from services.serving.errors import invalid
from spd_client.generated.spd.v1 import decomposition_service_pb2 as pb

SERVICES: Final[tuple[ServiceDescriptor, ...]] = (
    pb.DESCRIPTOR.services_by_name["DecompositionService"],
    health_pb2.DESCRIPTOR.services_by_name["Health"],
)
"""Every service the application answers (reflection lists them, and itself)."""

M = TypeVar("M", bound=Message)


def _raw_handler(servicer: Any, method: MethodDescriptor) -> grpc.RpcMethodHandler:
    """The method's handler with bytes in (no deserializer); its behaviour is Serve's."""
    if method.client_streaming:
        raise ValueError(f"{method.full_name}: client-streaming RPCs are not served")
    make = (
        grpc.unary_stream_rpc_method_handler
        if method.server_streaming
        else grpc.unary_unary_rpc_method_handler
    )
    return make(getattr(servicer, method.name), request_deserializer=None)


def add_services_to_server(servicer: Any, server: grpc.Server) -> None:
    """The `grpc_servicer_functions` entry of the spd application: every method of SERVICES,
    registered as the generated functions do but taking raw request bytes."""
    for service in SERVICES:
        handlers = {m.name: _raw_handler(servicer, m) for m in service.methods}
        server.add_generic_rpc_handlers(
            (grpc.method_handlers_generic_handler(service.full_name, handlers),)
        )
        server.add_registered_method_handlers(service.full_name, handlers)


def parse(raw: bytes | M, message_type: type[M]) -> M:
    """The request as `message_type`; INVALID_ARGUMENT naming the type when the bytes do not
    parse. (An already parsed message, as the generated servicer functions deliver, passes.)"""
    if isinstance(raw, message_type):
        return raw
    try:
        return message_type.FromString(raw)
    except DecodeError:
        name = message_type.DESCRIPTOR.full_name
        raise invalid(
            f"the request bytes do not parse as a {name} message; send a serialized {name} "
            "(the stubs in spd_client.generated do)"
        ) from None
