"""`spd verify STORE [--json]`: one line per problem naming the file, expected and found, and an
exit status a script can branch on."""

from __future__ import annotations

import json
from pathlib import Path

import numpy as np
import pytest

from services.cli import main
from spd_core.store import SCHEMA_VERSION, ModuleLayout, StoreWriter

FIXTURE = Path(__file__).parent / "fixtures" / "stores" / "tms-5-2-schema1.zarr"


@pytest.fixture
def store(tmp_path: Path) -> Path:
    path = tmp_path / "s.zarr"
    writer = StoreWriter.create(
        path, modules={"m": ModuleLayout("linear", 4, 3, 2)}, config={}, target_spec={}, chunk_c=2
    )
    writer.write_factor_rows("m", "U", 0, np.arange(8, dtype=np.float32).reshape(4, 2))
    writer.write_factor_rows("m", "V", 0, np.ones((4, 3), np.float32))
    writer.mark_complete()
    return path


def test_a_good_store_verifies(store: Path, capsys):
    assert main(["verify", str(store)]) == 0
    out = capsys.readouterr().out
    assert f"factor store  {store}" in out and f"schema {SCHEMA_VERSION}, complete" in out
    assert "OK: every file matches the manifest" in out


def test_each_problem_is_one_line_naming_the_file_and_the_status_is_1(store: Path, capsys):
    (store / "modules/m/U/c/1/0").unlink()
    (store / "modules/m/V/c/0/0").write_bytes(b"short")
    assert main(["verify", str(store)]) == 1
    out = capsys.readouterr().out
    assert "2 problem(s):" in out
    assert f"- missing chunk: {store}/modules/m/U/c/1/0 (expected " in out
    assert f"- chunk of the wrong size: {store}/modules/m/V/c/0/0 (expected " in out
    assert "found 5 bytes)" in out

    assert main(["verify", str(store), "--json"]) == 1
    report = json.loads(capsys.readouterr().out)
    assert (report["ok"], report["verified"], report["schema"]) == (False, False, SCHEMA_VERSION)
    assert [(p["kind"], p["what"], p["node"], p["key"]) for p in report["problems"]] == [
        ("missing", "chunk", "modules/m/U", "c/1/0"),
        ("size", "chunk", "modules/m/V", "c/0/0"),
    ]
    assert report["problems"][1]["found"] == "5 bytes"


def test_a_schema_1_store_has_nothing_wrong_but_cannot_be_verified(capsys):
    assert main(["verify", str(FIXTURE), "--json"]) == 3
    report = json.loads(capsys.readouterr().out)
    assert report["ok"] and not report["verified"] and "cannot be verified" in report["note"]


def test_a_path_that_is_no_store_is_an_error(tmp_path: Path, capsys):
    assert main(["verify", str(tmp_path / "nope.zarr")]) == 2
    assert "spd verify: error: no factor store at" in capsys.readouterr().err
