"""`POST /api/v1/{Method}`: every RPC of spd.v1.DecompositionService in the proto3 JSON mapping
(google.protobuf.json_format), answered by the same methods as gRPC. Streaming RPCs answer
newline-delimited JSON, one message per line. A refusal is the HTTP code gRPC-gateway gives its
status, with a body {"code": <name>, "message": ...}."""

from __future__ import annotations

import json
from collections.abc import AsyncIterator

import grpc
from google.protobuf import json_format
from google.protobuf.message import Message
from starlette.requests import Request
from starlette.responses import JSONResponse, Response, StreamingResponse

from services.explorer.rpc import METHODS, Rpc, RpcRefused, request_type

HTTP_STATUS: dict[grpc.StatusCode, int] = {
    grpc.StatusCode.OK: 200,
    grpc.StatusCode.CANCELLED: 499,
    grpc.StatusCode.UNKNOWN: 500,
    grpc.StatusCode.INVALID_ARGUMENT: 400,
    grpc.StatusCode.DEADLINE_EXCEEDED: 504,
    grpc.StatusCode.NOT_FOUND: 404,
    grpc.StatusCode.ALREADY_EXISTS: 409,
    grpc.StatusCode.PERMISSION_DENIED: 403,
    grpc.StatusCode.UNAUTHENTICATED: 401,
    grpc.StatusCode.RESOURCE_EXHAUSTED: 429,
    grpc.StatusCode.FAILED_PRECONDITION: 400,
    grpc.StatusCode.ABORTED: 409,
    grpc.StatusCode.OUT_OF_RANGE: 400,
    grpc.StatusCode.UNIMPLEMENTED: 501,
    grpc.StatusCode.INTERNAL: 500,
    grpc.StatusCode.UNAVAILABLE: 503,
    grpc.StatusCode.DATA_LOSS: 500,
}
"""gRPC status -> HTTP status, as gRPC-gateway maps them."""
NDJSON = "application/x-ndjson"


def error_body(code: grpc.StatusCode, message: str) -> dict[str, str]:
    return {"code": code.name, "message": message}


def error_response(code: grpc.StatusCode, message: str) -> JSONResponse:
    return JSONResponse(error_body(code, message), status_code=HTTP_STATUS[code])


def to_json(message: Message) -> str:
    """A message in the proto3 JSON mapping, on one line."""
    return json.dumps(json_format.MessageToDict(message), separators=(",", ":"))


def parse_request(method: str, body: bytes) -> Message:
    """The JSON body as the RPC's request message (an empty body is the empty message);
    RpcRefused(INVALID_ARGUMENT) naming what does not fit."""
    message = request_type(method)()
    if body.strip():
        try:
            json_format.Parse(body, message)
        except (json_format.ParseError, UnicodeDecodeError) as err:
            raise RpcRefused(
                grpc.StatusCode.INVALID_ARGUMENT,
                f"the body is not a {message.DESCRIPTOR.full_name} in proto3 JSON: {err}",
            ) from None
    return message


async def _lines(first: Message, rest: AsyncIterator[Message]) -> AsyncIterator[str]:
    yield to_json(first) + "\n"
    try:
        async for message in rest:
            yield to_json(message) + "\n"
    except RpcRefused as err:  # after the first message the HTTP status is sent: say it last
        yield json.dumps({"error": error_body(err.code, err.message)}) + "\n"


async def answer(rpc: Rpc, method: str, request: Request) -> Response:
    """The HTTP response to `POST /api/v1/{method}`."""
    if method not in METHODS:
        return error_response(
            grpc.StatusCode.NOT_FOUND,
            f"no RPC named {method!r}; spd.v1.DecompositionService has: {', '.join(METHODS)}",
        )
    try:
        message = parse_request(method, await request.body())
        if not METHODS[method].server_streaming:
            return Response(to_json(await rpc.call(method, message)), media_type="application/json")
        stream = rpc.stream(method, message)
        first = await anext(stream, None)
    except RpcRefused as err:
        return error_response(err.code, err.message)
    if first is None:
        return Response("", media_type=NDJSON)
    return StreamingResponse(_lines(first, stream), media_type=NDJSON)
