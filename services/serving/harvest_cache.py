"""Each served store's harvest, opened (and checked) once, read into memory and kept until its
manifest changes, with its component table ranked once per order: a ListComponents page is a
slice, a summary reads no files.

Whether the kept harvest is still the stored one is decided on every request from a stamp of the
files a new, removed, restarted or replaced harvest (or decomposition, or labels) always
rewrites: `harvest/zarr.json` (its `complete` flag), its manifest `harvest/integrity/zarr.json`,
the decomposition's manifest `integrity/zarr.json`, and the labels' `interp/zarr.json` and
manifest `interp/integrity/zarr.json`: their inode, size and times (a local store) or
what the filesystem reports of them (a URL store: size, ETag, modification time, ...). A new stamp opens the harvest again, with
every check of `HarvestReader.open` (complete, listing against manifest, made from this
decomposition); a refusal is not kept, so a harvest that is refused stays refused until it is
fixed. Bytes damaged in place later, without any of those files changing, are found by
`spd verify`; the answers stay those of the harvest as it was checked.
"""

from __future__ import annotations

import math
import os
import threading
from dataclasses import dataclass, field
from pathlib import Path

from zarr.core.sync import sync

from spd_core.harvest import ComponentStats, HarvestReader
from spd_core.interp import Interpretation, interpretations
from spd_core.store import FactorStore
from spd_core.store.access import guard
from spd_core.store.layout import HARVEST, INTERP
from spd_core.store.manifest import METADATA, manifest_key

STAMPED = (
    f"{HARVEST}/{METADATA}",
    manifest_key(HARVEST),
    manifest_key(),
    f"{INTERP}/{METADATA}",
    manifest_key(INTERP),
)
Stamp = tuple[object, ...]


def harvest_stamp(store: FactorStore) -> Stamp:
    """What changes whenever the store's harvest (or decomposition) is replaced: per STAMPED
    file, its stat (local) or what its filesystem says of it (URL: size, ETag, modification
    time, ...); None for an absent file."""
    return tuple(_file_stamp(store, key) for key in STAMPED)


def _file_stamp(store: FactorStore, key: str) -> object:
    with guard(store.path, key):
        try:
            if isinstance(store.path, Path):
                st = os.stat(store.path / key)
                return (st.st_ino, st.st_size, st.st_mtime_ns, st.st_ctime_ns)
            fs_store = store.root.store
            path = f"{fs_store.path.rstrip('/')}/{key}"  # type: ignore[attr-defined]
            fs = fs_store.fs  # type: ignore[attr-defined]
            fs.invalidate_cache(path)  # listings are cached by some filesystems (s3fs)
            info = sync(fs._info(path))
        except FileNotFoundError:
            return None
    return tuple(sorted((k, str(v)) for k, v in info.items() if k != "name"))


def _ranked(rows: list[ComponentStats], modules: list[str], by_mean: bool) -> list[ComponentStats]:
    """Highest frequency (or mean CI, never-firing last) first; ties in module order, then
    component index."""
    position = {m: i for i, m in enumerate(modules)}

    def value(r: ComponentStats) -> float:
        if not by_mean:
            return r.firing_frequency
        return -1.0 if math.isnan(r.mean_ci_when_firing) else r.mean_ci_when_firing

    return sorted(rows, key=lambda r: (-value(r), position[r.module], r.component))


@dataclass
class ServedHarvest:
    """A checked harvest and its component table, ranked on first use per (module, order)."""

    reader: HarvestReader
    stamp: Stamp = ()
    _ranked: dict[tuple[str | None, bool], list[ComponentStats]] = field(
        default_factory=dict, init=False, repr=False
    )
    _interpretations: dict[str, list[Interpretation]] = field(
        default_factory=dict, init=False, repr=False
    )

    def interpretations(self, module: str) -> list[Interpretation]:
        """Each component's label (from the store's labels, when complete) and token summary,
        read once per module; StoreError for damaged labels."""
        found = self._interpretations.get(module)
        if found is None:
            found = self._interpretations[module] = interpretations(self.reader, module)
        return found

    def ranked(self, module: str | None, by_mean: bool) -> list[ComponentStats]:
        """The components (of `module`, or all), ranked as ListComponents lists them. Built
        once per key; two threads building the same key at once build equal lists."""
        key = (module, by_mean)
        found = self._ranked.get(key)
        if found is None:
            modules = list(self.reader.store.modules)
            found = self._ranked[key] = _ranked(self.reader.table(module), modules, by_mean)
        return found


class HarvestCache:
    """ServedHarvest per store name, kept while its stamp holds. Safe to call from several
    threads: a store is (re)opened by one thread while the others wait for it; a kept harvest
    is only read. `enabled` False opens the harvest anew on every call and reads arrays on
    demand, as the server did before this cache (to measure against)."""

    def __init__(self, enabled: bool = True) -> None:
        self.enabled = enabled
        self._kept: dict[str, ServedHarvest] = {}
        self._locks: dict[str, threading.Lock] = {}
        self._locks_lock = threading.Lock()

    def get(self, name: str, store: FactorStore) -> ServedHarvest:
        """The complete harvest of `store` (served as `name`); StoreError (NoHarvestError when
        there is none or it is incomplete) as `HarvestReader.open` raises it."""
        if not self.enabled:
            return ServedHarvest(HarvestReader.open(store))
        stamp = harvest_stamp(store)
        kept = self._kept.get(name)
        if kept is not None and kept.stamp == stamp:
            return kept
        with self._lock(name):
            kept = self._kept.get(name)
            stamp = harvest_stamp(store)
            if kept is not None and kept.stamp == stamp:
                return kept  # another thread opened it while this one waited
            self._kept.pop(name, None)
            served = ServedHarvest(HarvestReader.open(store).load(), stamp)
            if harvest_stamp(store) == stamp:  # not replaced while it was read
                self._kept[name] = served
            return served

    def _lock(self, name: str) -> threading.Lock:
        with self._locks_lock:
            return self._locks.setdefault(name, threading.Lock())
