"""What the explorer keeps per replica beside the deployment: the table's index of each
harvest (rebuilt whenever the deployment's harvest cache holds a new one: a new harvest or new
labels), the training curves, and the harvest windows of text decompositions."""

from __future__ import annotations

import asyncio
import threading

import numpy as np

from services.explorer.example_windows import ExampleWindows
from services.explorer.harvest_index import HarvestIndex
from services.serving.catalog import Catalog
from services.serving.component_stats import harvest_of


class ExplorerState:
    """The explorer's per-replica caches over the deployment's `catalog`."""

    def __init__(self, catalog: Catalog) -> None:
        self.catalog = catalog
        self.windows = ExampleWindows()
        self._indexes: dict[str, HarvestIndex] = {}
        self._curves: dict[str, dict[str, np.ndarray]] = {}
        self._lock = threading.Lock()

    def _read_curves(self, name: str) -> dict[str, np.ndarray]:
        if name not in self._curves:  # a served store is complete: its records never change
            self._curves[name] = self.catalog.store(name).curves()
        return self._curves[name]

    async def curves(self, name: str) -> dict[str, np.ndarray]:
        """`name`'s training records (read once)."""
        return await asyncio.to_thread(self._read_curves, name)

    def _index(self, name: str) -> HarvestIndex:
        served = harvest_of(self.catalog, name)  # the deployment's cached harvest
        with self._lock:
            cached = self._indexes.get(name)
            if cached is None or cached.served is not served:
                cached = self._indexes[name] = HarvestIndex(served)
        return cached

    async def index(self, name: str) -> HarvestIndex:
        """The index of `name`'s harvest; RequestError(FAILED_PRECONDITION) without one."""
        return await asyncio.to_thread(self._index, name)
