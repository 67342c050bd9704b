"""`spd query` against the session's server, and `spd serve` refusing bad stores before Ray."""

from __future__ import annotations

import json
import os

import numpy as np
import pytest
import torch

from services.cli import main
from spd_core.loading import load_component_model
from spd_core.queries import importances
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


def test_serve_environment_keeps_values_already_set(monkeypatch):
    from services.serving.app import SERVE_ENV, set_serve_env

    key = next(iter(SERVE_ENV))
    monkeypatch.setenv(key, "0")
    set_serve_env()
    assert os.environ[key] == "0"
    monkeypatch.delenv(key)
    set_serve_env()
    assert os.environ[key] == SERVE_ENV[key]
