"""The catalog opens stores up front and keeps the most recently used models (no Ray)."""

from __future__ import annotations

import grpc
import pytest
import torch

from services.serving.catalog import Catalog
from services.serving.errors import RequestError
from spd_core.store import ModuleLayout, StoreError, StoreWriter


def test_keeps_the_most_recently_used_models(stores):
    catalog = Catalog({name: str(path) for name, path in stores.items()}, max_loaded=1)
    first = catalog.load("tms-5-2")
    assert catalog.load("tms-5-2") is first
    catalog.load("tms-5-2-id")
    assert catalog.loaded_names() == ["tms-5-2-id"]
    assert catalog.load("tms-5-2") is not first


def test_two_models_stay_loaded_together(stores):
    catalog = Catalog({name: str(path) for name, path in stores.items()}, max_loaded=2)
    a, b = catalog.load("tms-5-2"), catalog.load("tms-5-2-id")
    assert catalog.load("tms-5-2") is a and catalog.load("tms-5-2-id") is b
    assert catalog.loaded_names() == ["tms-5-2", "tms-5-2-id"]


def test_unknown_names_and_missing_stores(stores, tmp_path):
    catalog = Catalog({"a": str(stores["tms-5-2"])})
    with pytest.raises(RequestError, match="no decomposition named 'b'; this server serves: a"):
        catalog.load("b")
    with pytest.raises(StoreError, match="does not exist"):
        Catalog({"gone": str(tmp_path / "gone.zarr")})


def _store(path, target_spec: dict) -> str:
    writer = StoreWriter.create(
        path,
        modules={"fc": ModuleLayout(kind="linear", C=2, d_in=3, d_out=2)},
        config={"steps": 1},
        target_spec=target_spec,
    )
    writer.write_factor_rows("fc", "U", 0, torch.ones(2, 2))
    writer.write_factor_rows("fc", "V", 0, torch.ones(2, 3))
    writer.mark_complete()
    return str(path)


def test_serves_hf_stores_and_refuses_other_target_kinds(tmp_path):
    with pytest.raises(StoreError, match="target kind 'custom' cannot be served; this server"):
        Catalog({"c": _store(tmp_path / "c.zarr", {"kind": "custom"})})
    gone = str(tmp_path / "deleted-model")
    spec = {"kind": "hf", "model": gone, "source": gone, "model_class": "BertModel"}
    catalog = Catalog({"lm": _store(tmp_path / "lm.zarr", spec)})
    assert catalog.is_text("lm") and catalog.signature("lm") is None
    with pytest.raises(
        RequestError, match=r"'lm' cannot be loaded: .*cannot rebuild its target"
    ) as e:
        catalog.load("lm")
    assert e.value.code == grpc.StatusCode.FAILED_PRECONDITION
