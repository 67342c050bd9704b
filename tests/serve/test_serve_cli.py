"""`spd query` against the session's server, and `spd serve` refusing missing and damaged stores
before Ray."""

from __future__ import annotations

import json
import os
import shutil
from pathlib import Path

import numpy as np
import pytest
import torch

from services.cli import main
from spd_core.loading import load_component_model, load_decomposition
from spd_core.queries import importances
from spd_core.store import FactorStore, StoreError
from tests.serve.conftest import TOKEN


@pytest.mark.ray
def test_query_json_importances_equal_in_process(server, stores, capsys):
    x = [[0.0, 0.8, 0.0, 0.3, 0.0]]
    code = main(
        [
            "query",
            "--address",
            server,
            "--token",
            TOKEN,
            "--json",
            "importances",
            "tms-5-2",
            json.dumps(x),
        ]
    )
    assert code == 0
    printed = json.loads(capsys.readouterr().out)
    model, _ = load_component_model(stores["tms-5-2"])
    expected = importances(model, torch.tensor(x))
    for module, ci in expected.items():
        np.testing.assert_allclose(printed[module]["values"], ci.numpy(), atol=1e-6, rtol=0)


@pytest.mark.ray
def test_query_table_and_refusal(server, capsys):
    assert main(["query", "--address", server, "--token", TOKEN, "list"]) == 0
    assert "tms-5-2-id  target tms-5-2-id  input [5]" in capsys.readouterr().out
    code = main(["query", "--address", server, "--token", TOKEN, "describe", "missing"])
    assert code == 2
    assert "NOT_FOUND: no decomposition named 'missing'" in capsys.readouterr().err


def test_serve_refuses_a_missing_store_before_starting_ray(tmp_path, capsys):
    assert main(["serve", str(tmp_path / "none.zarr")]) == 2
    assert "does not exist" in capsys.readouterr().err


def test_serve_refuses_a_damaged_store_before_starting_ray_as_every_reader_does(
    stores, tmp_path, capsys
):
    deleted = Path(shutil.copytree(stores["tms-5-2"], tmp_path / "deleted.zarr"))
    (deleted / "modules" / "linear1" / "U" / "c" / "0" / "0").unlink()
    assert main(["serve", str(deleted)]) == 2
    with pytest.raises(StoreError) as loaded:
        load_decomposition(deleted)
    assert "missing chunk" in str(loaded.value)
    assert capsys.readouterr().err == f"spd serve: error: {loaded.value}\n"

    flipped = Path(shutil.copytree(stores["tms-5-2"], tmp_path / "flipped.zarr"))
    chunk = flipped / "modules" / "linear2" / "V" / "c" / "0" / "0"
    data = bytearray(chunk.read_bytes())
    data[-1] ^= 1
    chunk.write_bytes(bytes(data))
    assert main(["serve", "--verify", str(flipped)]) == 2  # only a full read finds a flip
    with pytest.raises(StoreError) as verified:
        FactorStore.open(flipped, verify=True)
    assert "chunk with the wrong checksum" in str(verified.value)
    assert capsys.readouterr().err == f"spd serve: error: {verified.value}\n"


def test_serve_environment_keeps_values_already_set(monkeypatch):
    from services.serving.app import SERVE_ENV, set_serve_env

    key = next(iter(SERVE_ENV))
    monkeypatch.setenv(key, "0")
    set_serve_env()
    assert os.environ[key] == "0"
    monkeypatch.delenv(key)
    set_serve_env()
    assert os.environ[key] == SERVE_ENV[key]
