"""The catalog opens stores up front and keeps the most recently used models (no Ray)."""

from __future__ import annotations

import pytest

from services.serving.catalog import Catalog
from services.serving.errors import RequestError
from spd_core.store import StoreError


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
