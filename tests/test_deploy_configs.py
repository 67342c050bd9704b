"""deploy/ runs the same application: the Serve config and the RayService validate, and their
import paths, servicer functions and application args resolve."""

from __future__ import annotations

import importlib
from pathlib import Path

import pytest
import yaml
from ray.serve.schema import ServeDeploySchema

from services.serving.app import APP_NAME, SERVE_ENV, SERVICER_FUNCTIONS, AppArgs

DEPLOY = Path(__file__).resolve().parent.parent / "deploy"


def _resolve(dotted: str, sep: str) -> object:
    module, _, attr = dotted.rpartition(sep)
    return getattr(importlib.import_module(module), attr)


def _serve_configs() -> dict[str, dict]:
    service = yaml.safe_load((DEPLOY / "rayservice.yaml").read_text())
    assert service["kind"] == "RayService"
    return {
        "serve-config.yaml": yaml.safe_load((DEPLOY / "serve-config.yaml").read_text()),
        "rayservice.yaml": yaml.safe_load(service["spec"]["serveConfigV2"]),
    }


@pytest.mark.parametrize("name", ["serve-config.yaml", "rayservice.yaml"])
def test_serve_config_runs_the_spd_application(name):
    config = ServeDeploySchema.model_validate(_serve_configs()[name])
    assert config.grpc_options.grpc_servicer_functions == SERVICER_FUNCTIONS
    for dotted in config.grpc_options.grpc_servicer_functions:
        assert callable(_resolve(dotted, "."))
    (app,) = config.applications
    assert (app.name, app.route_prefix) == (APP_NAME, "/")
    assert callable(_resolve(app.import_path, ":"))
    args = AppArgs.model_validate(app.args)
    assert args.stores and args.max_ongoing_requests > 5


def test_ray_service_exposes_grpc_and_mounts_the_stores():
    service = yaml.safe_load((DEPLOY / "rayservice.yaml").read_text())
    cluster = service["spec"]["rayClusterConfig"]
    assert cluster["rayVersion"].startswith("2.60")
    (worker,) = cluster["workerGroupSpecs"][0]["template"]["spec"]["containers"]
    assert {"containerPort": 50051, "name": "grpc"} in worker["ports"]
    mounts = {m["mountPath"] for m in worker["volumeMounts"]}
    stores = AppArgs.model_validate(
        yaml.safe_load(service["spec"]["serveConfigV2"])["applications"][0]["args"]
    ).stores
    assert all(any(s.startswith(m) for m in mounts) for s in stores)


def test_ray_service_sets_the_serve_environment_on_every_node():
    cluster = yaml.safe_load((DEPLOY / "rayservice.yaml").read_text())["spec"]["rayClusterConfig"]
    groups = [cluster["headGroupSpec"], *cluster["workerGroupSpecs"]]
    for group in groups:
        (container,) = group["template"]["spec"]["containers"]
        env = {e["name"]: e.get("value") for e in container["env"]}
        assert SERVE_ENV.items() <= env.items()
