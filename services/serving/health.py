"""The standard gRPC health service (grpc.health.v1.Health) for one Serve application.

Serve routes a call to the application named by its `application` metadata (with a single
application, to that one), so each application's deployment answers for itself: SERVING once a
replica is up, since a replica starts only after opening (and checking) every store it serves.
Health calls need no token: load balancers and Kubernetes probes send none.
"""

from __future__ import annotations

from typing import Final

from grpc_health.v1 import health_pb2

from services.serving.errors import not_found
from services.serving.wire import SERVICES

SERVED: Final = ("", *(s.full_name for s in SERVICES))
"""Service names Check answers for: "" (the whole application) and each served service."""


def _serving() -> health_pb2.HealthCheckResponse:
    return health_pb2.HealthCheckResponse(status=health_pb2.HealthCheckResponse.SERVING)


def check(request: health_pb2.HealthCheckRequest) -> health_pb2.HealthCheckResponse:
    """SERVING for a served service name; NOT_FOUND (as the health protocol says) otherwise."""
    if request.service not in SERVED:
        names = ", ".join(repr(s) for s in SERVED)
        raise not_found(f"no health status for service {request.service!r}; ask for one of {names}")
    return _serving()


def list_statuses(request: health_pb2.HealthListRequest) -> health_pb2.HealthListResponse:
    """The status of every served service name (List, the protocol's newest method)."""
    return health_pb2.HealthListResponse(statuses={name: _serving() for name in SERVED})
