"""One Ray Serve app for the session (gRPC and HTTP), serving two small toy decompositions; the
harvested stores the harvest and explorer tests serve beside it."""

from __future__ import annotations

import shutil
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
def harvested_toy(stores, tmp_path_factory) -> Path:
    """A copy of the session's tms-5-2 store with a harvest of 256 inputs."""
    from spd_core.harvest import HarvestSettings, harvest, harvest_inputs, write_harvest
    from spd_core.loading import load_decomposition
    from spd_core.store import FactorStore

    path = tmp_path_factory.mktemp("serve-harvest") / "tms.zarr"
    shutil.copytree(stores["tms-5-2"], path)
    store = FactorStore.open(path)
    dec = load_decomposition(store)
    s = HarvestSettings(threshold=dec.config.ci_alive_threshold, shard_size=128, top_k=6)
    write_harvest(path, harvest(dec, harvest_inputs(store, dec, s, inputs=256), s))
    return path


@pytest.fixture(scope="session")
def http_port() -> int:
    """Serve's HTTP port for the session (the explorer and the JSON API)."""
    return _free_port()


@pytest.fixture(scope="session")
def server(ray_session, stores, http_port) -> str:
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
    start(args, grpc_port=port, http_port=http_port)
    yield f"127.0.0.1:{port}"
    serve.shutdown()


@pytest.fixture
def client(server):
    from spd_client import Client

    with Client(server, token=TOKEN) as c:
        yield c


EXPLORER_APP = "explorer"


@pytest.fixture(scope="module")
def explorer(server, stores, harvested_toy, harvested_text_store, http_port) -> str:
    """Base URL of an application serving a harvested toy (tms), an unharvested one (bare) and a
    harvested language model (smol) under /explorer, token TOKEN; deleted after the module."""
    from ray import serve

    args = {
        "stores": [
            f"tms={harvested_toy}",
            f"bare={stores['tms-5-2-id']}",
            f"smol={harvested_text_store[0]}",
        ],
        "token": TOKEN,
        "replica_cpus": 0.5,
        "limits": {"max_inputs": 16},
    }
    yield run_http_app(args, EXPLORER_APP, http_port)
    serve.delete(EXPLORER_APP)


def run_http_app(args: dict, name: str, http_port: int) -> str:
    """Run the spd application for `args` as `name` under /`name`; its base URL once it answers."""
    import time
    import urllib.request

    from ray import serve

    from services.serving.app import build_app

    serve.run(build_app(args), name=name, route_prefix=f"/{name}", blocking=False)
    base = f"http://127.0.0.1:{http_port}/{name}"
    # the app is deployed in the background, and the HTTP proxy (started on first use) learns
    # its route after that: wait for both, as long as the session's proxy may take to start
    deadline = time.monotonic() + 120
    while True:
        try:
            with urllib.request.urlopen(f"{base}/healthz", timeout=5) as response:
                if response.status == 200:
                    break
        except OSError:
            pass
        if time.monotonic() > deadline:
            raise RuntimeError(f"application {name!r} did not answer at {base}/healthz in 120 s")
        time.sleep(0.2)
    return base


@pytest.fixture(scope="session")
def wide_toy(tmp_path_factory) -> Path:
    """TMS 5-2 with C = 400 in both modules, decomposed for two small steps: at threshold -1
    (every component active) its graph has over 50,000 non-zero edges."""
    from spd_core.config import config_from_dict

    raw = resolve_config("tms-5-2").model_dump()
    raw.update(steps=2, batch_size=64, eval_batch_size=64, faithfulness_warmup_steps=0)
    raw["module_info"] = [{"module_pattern": m, "C": 400} for m in ("linear1", "linear2")]
    config = config_from_dict(raw)
    path = tmp_path_factory.mktemp("wide-toy") / "wide.zarr"
    decompose(config, toy_task(config, torch.device("cpu")), out=path)
    return path


GRAPH_APP = "graph"


@pytest.fixture(scope="module")
def graph_explorer(server, stores, wide_toy, harvested_text_store, http_port) -> str:
    """Base URL of an application for the attribution-graph pages, under /graph, token TOKEN:
    tms (TMS 5-2, linear1 -> linear2), wide (wide_toy) and smol (a language model with one
    decomposed module, whose edges go to the loss); deleted after the module."""
    from ray import serve

    args = {
        "stores": [
            f"tms={stores['tms-5-2']}",
            f"wide={wide_toy}",
            f"smol={harvested_text_store[0]}",
        ],
        "token": TOKEN,
        "replica_cpus": 0.5,
    }
    yield run_http_app(args, GRAPH_APP, http_port)
    serve.delete(GRAPH_APP)
