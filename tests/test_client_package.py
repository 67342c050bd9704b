"""The client distribution (client/, `spd_client`) stands alone: it imports without the stack,
declares only what it imports, and its messages survive the pickling Ray Serve does."""

from __future__ import annotations

import pickle
import subprocess
import sys
import tomllib
from pathlib import Path

import numpy as np
from packaging.requirements import Requirement

ROOT = Path(__file__).resolve().parent.parent


def _requirements(pyproject: Path) -> dict[str, Requirement]:
    project = tomllib.loads(pyproject.read_text())["project"]
    return {(r := Requirement(line)).name: r for line in project["dependencies"]}


def test_importing_spd_client_loads_no_torch_ray_zarr_or_project_code(tmp_path: Path):
    # a fresh interpreter outside the checkout: only the installed distribution is importable
    code = (
        "import sys, spd_client; print(spd_client.Client, spd_client.AsyncClient); "
        "print(sorted({m.split('.')[0] for m in sys.modules} "
        "& {'torch', 'ray', 'zarr', 'scipy', 'pydantic', 'spd_core', 'services'}))"
    )
    proc = subprocess.run(
        [sys.executable, "-c", code], capture_output=True, text=True, cwd=tmp_path
    )
    assert proc.returncode == 0, (
        f"`import spd_client` failed (is `-e ./client` installed?):\n{proc.stderr}"
    )
    classes, loaded = proc.stdout.strip().splitlines()
    assert "spd_client.client.Client" in classes
    assert loaded == "[]", f"importing spd_client loaded {loaded}; the client must not need them"


def test_client_distribution_declares_exactly_grpcio_protobuf_numpy_with_the_main_bounds():
    client = _requirements(ROOT / "client" / "pyproject.toml")
    main = _requirements(ROOT / "pyproject.toml")
    assert sorted(client) == ["grpcio", "numpy", "protobuf"]
    for name, requirement in client.items():
        assert requirement.specifier == main[name].specifier, (
            f"{name}: client/pyproject.toml has {requirement.specifier}, "
            f"pyproject.toml has {main[name].specifier}; keep them the same"
        )


def test_main_project_requires_the_client_version_in_client_pyproject():
    version = tomllib.loads((ROOT / "client" / "pyproject.toml").read_text())["project"]["version"]
    required = _requirements(ROOT / "pyproject.toml")["spd-client"].specifier
    assert version in required, (
        f"pyproject.toml requires spd-client{required}, client/ is {version}"
    )


def test_requests_pickle_with_their_importable_module_path():
    from spd_client.messages import importances_request

    request = importances_request("tms-5-2", np.ones((2, 5), np.float32), top_k=2)
    assert type(request).__module__ == "spd_client.generated.spd.v1.decomposition_service_pb2"
    assert pickle.loads(pickle.dumps(request)) == request
