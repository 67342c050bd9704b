"""The committed gRPC stubs are exactly what `python -m services.protos_build` generates."""

from __future__ import annotations

from pathlib import Path

from services.protos_build import GENERATED, generate


def test_committed_stubs_match_the_protos(tmp_path: Path):
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
