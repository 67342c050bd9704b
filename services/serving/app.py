"""The Serve application and how to start it: `build_app` is the import path that
`spd serve`, `deploy/serve-config.yaml` and the KubeRay RayService all use."""

from __future__ import annotations

import os
from typing import Any

from pydantic import BaseModel, ConfigDict, Field
from ray import serve
from ray.serve import Application
from ray.serve.config import gRPCOptions

from services.serving.catalog import name_stores
from services.serving.deployment import DecompositionServer
from spd_core.store.location import Location
from spd_core.store.portable import portable

APP_NAME = "spd"
SERVICER_FUNCTIONS = ["services.serving.wire.add_services_to_server"]
"""spd.v1.DecompositionService and grpc.health.v1.Health, raw request bytes in (see wire.py)."""
SERVE_ENV = {"RAY_SERVE_PROXY_USE_GRPC": "1"}
"""Ray Serve settings read from the environment of Ray's processes: the proxy forwards requests
to replicas over gRPC instead of Ray actor calls (part of Ray's RAY_SERVE_THROUGHPUT_OPTIMIZED;
about 2 ms less CPU per request on a 2-core machine)."""


def set_serve_env() -> None:
    """Put SERVE_ENV in this process's environment (values already set win). Call it before this
    process starts Ray: a local Ray's processes inherit it; a cluster started elsewhere needs the
    same variables in its own environment (deploy/rayservice.yaml sets them)."""
    for key, value in SERVE_ENV.items():
        os.environ.setdefault(key, value)


class AppArgs(BaseModel):
    """Arguments of the application (the `args:` of a Serve config)."""

    model_config = ConfigDict(extra="forbid")

    stores: list[str] = Field(min_length=1, description="PATH or NAME=PATH of each store")
    token: str | None = Field(None, description="bearer token; None: $SPD_SERVE_TOKEN or open")
    replicas: int = Field(1, ge=1)
    max_ongoing_requests: int = Field(64, ge=1)
    max_batch_size: int = Field(32, ge=1, description="1 turns batching off")
    batch_wait_timeout_s: float = Field(0.002, ge=0)
    max_loaded: int = Field(4, ge=1, description="decompositions kept in memory per replica")
    torch_threads: int = Field(1, ge=1)
    replica_cpus: float = Field(1.0, gt=0)
    limits: dict[str, int] = Field(default_factory=dict, description="overrides of Limits")
    verify: bool = Field(False, description="read and check every store fully at start")
    harvest_cache: bool = Field(
        True,
        description="keep each harvest in memory until its manifest changes and answer harvest "
        "calls off the event loop; False: reopen it every call, on the loop (the old path, to "
        "measure against)",
    )
    storage_options: dict[str, Any] = Field(
        default_factory=dict,
        description="fsspec storage options for URL stores (s3://, gs://); credentials otherwise "
        "from the environment of the process that builds the app, handed to every replica",
    )


def build_app(args: dict[str, Any]) -> Application:
    """The application for `args` (see AppArgs)."""
    cfg = AppArgs.model_validate(args)
    return DecompositionServer.options(
        num_replicas=cfg.replicas,
        max_ongoing_requests=cfg.max_ongoing_requests,
        ray_actor_options={"num_cpus": cfg.replica_cpus},
    ).bind(
        {
            name: portable(Location.of(path, cfg.storage_options))
            for name, path in name_stores(cfg.stores).items()
        },
        token=cfg.token,
        limits=cfg.limits,
        max_loaded=cfg.max_loaded,
        max_batch_size=cfg.max_batch_size,
        batch_wait_timeout_s=cfg.batch_wait_timeout_s,
        torch_threads=cfg.torch_threads,
        verify=cfg.verify,
        harvest_cache=cfg.harvest_cache,
    )


def start(
    args: dict[str, Any], grpc_port: int, http_port: int, http_host: str = "127.0.0.1"
) -> None:
    """Start Serve's proxies (gRPC on all interfaces at `grpc_port`, HTTP, the explorer and the
    JSON API, on `http_host`:`http_port`) on the connected Ray and run the application; returns
    once it is serving."""
    serve.start(
        http_options={"host": http_host, "port": http_port},
        grpc_options=gRPCOptions(port=grpc_port, grpc_servicer_functions=SERVICER_FUNCTIONS),
    )
    serve.run(build_app(args), name=APP_NAME, route_prefix="/", blocking=False)
