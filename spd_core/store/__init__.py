"""The factor store (Zarr v3, schema 1): one self-describing store per decomposition."""

from spd_core.store.errors import StoreError
from spd_core.store.layout import SCHEMA_VERSION, ModuleLayout
from spd_core.store.reader import FactorStore
from spd_core.store.writer import StoreWriter

__all__ = ["SCHEMA_VERSION", "FactorStore", "ModuleLayout", "StoreError", "StoreWriter"]
