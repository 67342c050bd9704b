"""The decompositions a server answers for: stores opened at start, models loaded lazily (LRU)."""

from __future__ import annotations

from collections import OrderedDict
from collections.abc import Mapping, Sequence
from dataclasses import dataclass
from pathlib import Path

from services.serving.errors import not_found, unavailable_store
from spd_core.component_model import ComponentModel
from spd_core.config import Config
from spd_core.loading import load_component_model
from spd_core.queries import IOSignature, io_signature
from spd_core.store import FactorStore, StoreError


def name_stores(specs: Sequence[str]) -> dict[str, str]:
    """`NAME=PATH` or `PATH` (named after the file, without .zarr) -> {name: path}."""
    named: dict[str, str] = {}
    for spec in specs:
        name, sep, path = spec.partition("=")
        if not sep or "://" in name:
            name, path = Path(spec.rstrip("/")).name.removesuffix(".zarr"), spec
        if not name or not path:
            raise ValueError(f"store {spec!r}: expected PATH or NAME=PATH")
        if name in named:
            raise ValueError(
                f"two stores are named {name!r} ({named[name]} and {path}); name them with NAME=PATH"
            )
        named[name] = path
    return named


@dataclass
class Loaded:
    """A decomposition ready for queries."""

    model: ComponentModel
    config: Config


class Catalog:
    """Open (validate) every store now; build each ComponentModel on first use and keep the
    `max_loaded` most recently used ones in memory."""

    def __init__(self, stores: Mapping[str, str], max_loaded: int = 4) -> None:
        if max_loaded < 1:
            raise ValueError(f"max_loaded must be >= 1, got {max_loaded}")
        self.max_loaded = max_loaded
        self._stores = {name: FactorStore.open(path) for name, path in stores.items()}
        self._signatures: dict[str, IOSignature] = {}
        for name, store in self._stores.items():
            signature = io_signature(store.target_spec)
            if signature is None:
                raise StoreError(
                    f"store {store.path} ({name}): its target is not stored with it; this server "
                    "serves self-contained (toy-target) stores only"
                )
            self._signatures[name] = signature
        self._loaded: OrderedDict[str, Loaded] = OrderedDict()

    @property
    def names(self) -> list[str]:
        """Served decomposition names, sorted."""
        return sorted(self._stores)

    def store(self, name: str) -> FactorStore:
        """The opened store of `name`; NOT_FOUND lists the served names."""
        if name not in self._stores:
            served = ", ".join(self.names)
            raise not_found(
                f"no decomposition named {name!r}; this server serves: {served} "
                "(ListDecompositions lists them)"
            )
        return self._stores[name]

    def signature(self, name: str) -> IOSignature:
        """Input/output shapes and dtype of `name`'s target."""
        self.store(name)
        return self._signatures[name]

    def loaded_names(self) -> list[str]:
        """Names whose models are in memory, least recently used first."""
        return list(self._loaded)

    def load(self, name: str) -> Loaded:
        """The model of `name`, built from its store on first use; evicts the least recently
        used model when more than `max_loaded` would be in memory."""
        store = self.store(name)
        if name in self._loaded:
            self._loaded.move_to_end(name)
            return self._loaded[name]
        try:
            model, config = load_component_model(store)
        except StoreError as err:
            raise unavailable_store(f"decomposition {name!r} cannot be loaded: {err}") from None
        self._loaded[name] = Loaded(model.eval(), config)
        while len(self._loaded) > self.max_loaded:
            self._loaded.popitem(last=False)
        return self._loaded[name]
