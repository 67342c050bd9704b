"""One Ray Serve gRPC app for the session, serving two small toy decompositions."""

from __future__ import annotations

import socket
from pathlib import Path

import pytest
import torch

from spd_core.presets import resolve_config
from spd_core.task.toy import toy_task
from spd_core.train.single_process import decompose

TOKEN = "test-token"
LIMITS = {"max_inputs": 64, "max_stream_inputs": 256, "max_samples": 4, "max_components": 8}
PRESETS = ("tms-5-2", "tms-5-2-id")


def _free_port() -> int:
    with socket.socket() as s:
        s.bind(("127.0.0.1", 0))
        return s.getsockname()[1]


@pytest.fixture(scope="session")
def stores(tmp_path_factory) -> dict[str, Path]:
    """{name: path} of two 20-step toy decompositions (TMS 5-2 and its identity variant)."""
    root = tmp_path_factory.mktemp("serve-stores")
    out = {}
    for preset in PRESETS:
        config = resolve_config(preset).model_copy(update={"steps": 20})
        path = root / f"{preset}.zarr"
        decompose(config, toy_task(config, torch.device("cpu")), out=path)
        out[preset] = path
    return out


@pytest.fixture(scope="session")
def server(ray_session, stores) -> str:
    """Address of the running app (token TOKEN, small LIMITS); shut down after the session."""
    from ray import serve

    from services.serving.app import start

    port = _free_port()
    args = {
        "stores": [f"{name}={path}" for name, path in stores.items()],
        "token": TOKEN,
        "limits": LIMITS,
        "max_batch_size": 64,
        "batch_wait_timeout_s": 0.05,
        "replica_cpus": 0.5,
    }
    start(args, grpc_port=port, http_port=_free_port())
    yield f"127.0.0.1:{port}"
    serve.shutdown()


@pytest.fixture
def client(server):
    from spd_client import Client

    with Client(server, token=TOKEN) as c:
        yield c
