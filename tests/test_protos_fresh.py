"""The committed gRPC stubs are exactly what `python -m services.protos_build` generates, with the
generator pinned in pyproject.toml, and they demand no newer runtime than the client declares."""

from __future__ import annotations

import re
import tomllib
from importlib.metadata import version
from pathlib import Path

from packaging.requirements import Requirement

from services.protos_build import GENERATED, generate

ROOT = Path(__file__).resolve().parent.parent


def _pinned_generator() -> str:
    dev = tomllib.loads((ROOT / "pyproject.toml").read_text())["project"]["optional-dependencies"]
    tools = next(r for r in map(Requirement, dev["dev"]) if r.name == "grpcio-tools")
    (spec,) = tools.specifier
    assert spec.operator == "==", f"grpcio-tools must be pinned exactly in [dev], not {spec}"
    return spec.version


def _client_floor(name: str) -> str:
    deps = tomllib.loads((ROOT / "client" / "pyproject.toml").read_text())["project"]
    (floor,) = (
        s.version
        for r in map(Requirement, deps["dependencies"])
        if r.name == name
        for s in r.specifier
        if s.operator == ">="
    )
    return floor


def test_committed_stubs_match_the_protos(tmp_path: Path):
    installed, pinned = version("grpcio-tools"), _pinned_generator()
    assert installed == pinned, (
        f"grpcio-tools {installed} is installed, pyproject.toml pins {pinned}: "
        f"`pip install -e '.[dev]'` installs the pinned one"
    )
    fresh = {p.relative_to(tmp_path): p.read_bytes() for p in generate(tmp_path)}
    committed = {
        p.relative_to(GENERATED): p.read_bytes()
        for p in GENERATED.rglob("*")
        if p.is_file() and "__pycache__" not in p.parts
    }
    stale = sorted(
        str(p) for p in fresh.keys() | committed.keys() if fresh.get(p) != committed.get(p)
    )
    assert not stale, f"stale stubs {stale}: run `python -m services.protos_build` and commit"


def test_stubs_demand_exactly_the_runtimes_the_client_declares():
    grpc_floor, protobuf_floor = _client_floor("grpcio"), _client_floor("protobuf")
    for path in sorted(GENERATED.rglob("*_pb2_grpc.py")):
        (stamp,) = re.findall(r"^GRPC_GENERATED_VERSION = '([^']+)'", path.read_text(), re.M)
        assert stamp == grpc_floor, (
            f"{path.name} demands grpcio>={stamp}, client/pyproject.toml declares >={grpc_floor}"
        )
    for path in sorted(GENERATED.rglob("*_pb2.py")):
        (stamp,) = re.findall(r"^# Protobuf Python Version: (\S+)$", path.read_text(), re.M)
        assert stamp == protobuf_floor, (
            f"{path.name} was made for protobuf {stamp}, "
            f"client/pyproject.toml declares >={protobuf_floor}"
        )
