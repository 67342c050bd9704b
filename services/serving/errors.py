"""Request errors: a canonical gRPC status and a message the caller can act on."""

from __future__ import annotations

import grpc


class RequestError(Exception):
    """A request the service refuses; `code` and `message` go to the client as they are."""

    def __init__(self, code: grpc.StatusCode, message: str) -> None:
        super().__init__(message)
        self.code = code
        self.message = message


def invalid(message: str) -> RequestError:
    """INVALID_ARGUMENT: the request itself is malformed."""
    return RequestError(grpc.StatusCode.INVALID_ARGUMENT, message)


def not_found(message: str) -> RequestError:
    """NOT_FOUND: a named decomposition, module or component does not exist."""
    return RequestError(grpc.StatusCode.NOT_FOUND, message)


def exhausted(message: str) -> RequestError:
    """RESOURCE_EXHAUSTED: the request is larger than the server accepts."""
    return RequestError(grpc.StatusCode.RESOURCE_EXHAUSTED, message)


def unauthenticated(message: str) -> RequestError:
    """UNAUTHENTICATED: the call lacks the server's bearer token."""
    return RequestError(grpc.StatusCode.UNAUTHENTICATED, message)


def unavailable_store(message: str) -> RequestError:
    """FAILED_PRECONDITION: the store behind a decomposition cannot be read."""
    return RequestError(grpc.StatusCode.FAILED_PRECONDITION, message)


def unimplemented(message: str) -> RequestError:
    """UNIMPLEMENTED: the RPC exists but this server does not offer it."""
    return RequestError(grpc.StatusCode.UNIMPLEMENTED, message)
