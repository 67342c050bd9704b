"""The decompositions a server answers for: stores opened at start, models loaded lazily (LRU).

Toy stores carry their target; Hugging Face (language-model) stores name a local model, which is
loaded with its tokenizer on first use."""

from __future__ import annotations

from collections import OrderedDict
from collections.abc import Mapping, Sequence
from dataclasses import dataclass
from pathlib import Path
from typing import Any

from services.serving.errors import not_found, unavailable_store
from services.serving.harvest_cache import HarvestCache, ServedHarvest
from spd_core.config import Config
from spd_core.loading import load_component_model, load_decomposition
from spd_core.model.component_model import ComponentModel
from spd_core.queries import IOSignature, io_signature
from spd_core.store import FactorStore, StoreError
from spd_core.store.location import Location


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
    tokenizer: Any | None = None


class Catalog:
    """Open (validate) every store now; build each ComponentModel on first use and keep the
    `max_loaded` most recently used ones in memory. Opening checks each store's file listing
    against its integrity manifest; `verify` also reads and checks every file. Harvests are
    kept in memory until their manifest changes (`harvest_cache` False: reopened every call)."""

    def __init__(
        self,
        stores: Mapping[str, str | Location],
        max_loaded: int = 4,
        verify: bool = False,
        harvest_cache: bool = True,
    ) -> None:
        if max_loaded < 1:
            raise ValueError(f"max_loaded must be >= 1, got {max_loaded}")
        self.max_loaded = max_loaded
        self._stores = {
            name: FactorStore.open(path, verify=verify) for name, path in stores.items()
        }
        self._signatures: dict[str, IOSignature | None] = {}
        for name, store in self._stores.items():
            signature = io_signature(store.target_spec)
            if signature is None and not self.is_text(name):
                raise StoreError(
                    f"store {store.path} ({name}): target kind "
                    f"{store.target_spec.get('kind')!r} cannot be served; this server serves "
                    "toy-target and Hugging Face (hf) stores"
                )
            self._signatures[name] = signature
        self._loaded: OrderedDict[str, Loaded] = OrderedDict()
        self._harvests = HarvestCache(enabled=harvest_cache)

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

    def signature(self, name: str) -> IOSignature | None:
        """Input/output shapes and dtype of `name`'s target; None for language models."""
        self.store(name)
        return self._signatures[name]

    def is_text(self, name: str) -> bool:
        """Whether `name` is a language model (takes text or token ids, not tensors)."""
        return self.store(name).target_spec.get("kind") == "hf"

    def harvest(self, name: str) -> ServedHarvest:
        """`name`'s complete harvest (HarvestCache: safe from any thread); StoreError when it
        has none, or an incomplete or damaged one."""
        return self._harvests.get(name, self.store(name))

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
            if self.is_text(name):
                dec = load_decomposition(store)
                loaded = Loaded(dec.model.eval(), dec.config, dec.tokenizer)
            else:
                model, config = load_component_model(store)
                loaded = Loaded(model.eval(), config)
        except StoreError as err:
            raise unavailable_store(f"decomposition {name!r} cannot be loaded: {err}") from None
        self._loaded[name] = loaded
        while len(self._loaded) > self.max_loaded:
            self._loaded.popitem(last=False)
        return self._loaded[name]
