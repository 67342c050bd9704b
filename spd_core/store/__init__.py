"""The factor store (Zarr v3, schema 2): one self-describing store per decomposition."""

from spd_core.store.errors import StoreError
from spd_core.store.integrity import UnverifiableStoreWarning
from spd_core.store.layout import SCHEMA_VERSION, ModuleLayout
from spd_core.store.reader import FactorStore
from spd_core.store.verify import VerifyReport, verify_store
from spd_core.store.writer import StoreWriter

__all__ = [
    "SCHEMA_VERSION",
    "FactorStore",
    "ModuleLayout",
    "StoreError",
    "StoreWriter",
    "UnverifiableStoreWarning",
    "VerifyReport",
    "verify_store",
]
