"""Read side of the factor store: validated, lazy access to factors, CI functions and curves."""

from __future__ import annotations

import copy
from collections.abc import Sequence
from pathlib import Path
from typing import Any

import numpy as np
import zarr

from spd_core.store.access import PathLike, guard, open_root
from spd_core.store.curves import read_curves
from spd_core.store.errors import StoreError
from spd_core.store.integrity import check_integrity, damaged_message
from spd_core.store.layout import (
    CI_FN,
    GLOBAL_CI_FN,
    TARGET,
    TRAINING,
    FactorName,
    module_group_path,
)
from spd_core.store.location import Location
from spd_core.store.names import NAME_ATTR
from spd_core.store.validate import check_complete, check_schema, read_layouts, unknown_module
from spd_core.store.verify import verify_store

Components = Sequence[int] | slice | None


def read_params(group: zarr.Group, order: Sequence[str] | None) -> dict[str, np.ndarray]:
    """Name -> array for every array in `group`, names taken from each array's `name` attr."""
    params = {str(arr.attrs.get(NAME_ATTR, key)): arr[...] for key, arr in group.arrays()}
    names = [n for n in (order or []) if n in params] + sorted(set(params) - set(order or []))
    return {name: np.asarray(params[name]) for name in names}


class FactorStore:
    """An opened, validated factor store (schema <= 3). Arrays are read on demand.

    `integrity_note` is None when the store's listing matched its integrity manifest, else a
    sentence saying why its files were not checked (an incomplete or schema-1 store)."""

    def __init__(
        self,
        root: zarr.Group,
        location: Location,
        attrs: dict[str, Any],
        integrity_note: str | None = None,
    ) -> None:
        """Use `FactorStore.open`."""
        self._root = root
        self.location = location
        """Where the store is, with the storage options it was opened with."""
        self.path: str | Path = location.where
        self.attrs = attrs
        self.schema_version: int = check_schema(attrs, self.path)
        self.integrity_note = integrity_note
        self.modules = read_layouts(root, self.path)

    @classmethod
    def open(
        cls,
        path: PathLike,
        *,
        allow_incomplete: bool = False,
        verify: bool = False,
        storage_options: dict[str, Any] | None = None,
    ) -> FactorStore:
        """Open and validate a store; StoreError if missing, corrupt, newer or incomplete, or,
        when complete, if a listing of its files differs from its integrity manifest (a chunk
        missing, truncated or added): a cheap check, not a read. With `verify`, every file is
        also read and checked (`verify_store`: flipped bytes, corrupt metadata)."""
        location = Location.of(path, storage_options)
        target, storage_options = location.where, location.storage_options
        root = open_root(target, "r", storage_options=storage_options)
        with guard(target, "zarr.json"):
            attrs = root.attrs.asdict()
        schema = check_schema(attrs, target)
        if not allow_incomplete:
            check_complete(attrs, target)
        if attrs.get("complete") is not True:
            note = "incomplete: its files are checked only once the run marks it complete"
            return cls(root, location, attrs, integrity_note=note)
        if verify:
            report = verify_store(location)
            if not report.ok:
                raise StoreError(damaged_message(target, report.problems))
        note = check_integrity(target, root, schema)
        return cls(root, location, attrs, integrity_note=note)

    def __repr__(self) -> str:
        state = "complete" if self.complete else "incomplete"
        return f"FactorStore({str(self.path)!r}, {state}, modules={list(self.modules)})"

    @property
    def root(self) -> zarr.Group:
        """The store's root Zarr group, opened read-only: for readers of its optional parts (the
        harvest, `spd_core.harvest.HarvestReader`)."""
        return self._root

    @property
    def complete(self) -> bool:
        """Whether the writing run finished (as of opening)."""
        return self.attrs.get("complete") is True

    @property
    def config(self) -> dict[str, Any]:
        """The decomposition config the store was written with."""
        return copy.deepcopy(self.attrs.get("config") or {})

    @property
    def target_spec(self) -> dict[str, Any]:
        """Which target model was decomposed."""
        return copy.deepcopy(self.attrs.get("target_spec") or {})

    @property
    def metrics(self) -> dict[str, Any]:
        """Summary metrics (as of opening)."""
        return copy.deepcopy(self.attrs.get("metrics") or {})

    @property
    def code_version(self) -> str:
        """The code version that wrote the store."""
        return str(self.attrs.get("code_version", ""))

    def _group(self, node: str) -> zarr.Group:
        with guard(self.path, node):
            group = self._root[node]
        if not isinstance(group, zarr.Group):
            raise StoreError(f"factor store {self.path}: {node} is not a group; store is damaged")
        return group

    def _module(self, module: str) -> str:
        if module not in self.modules:
            raise unknown_module(module, self.modules, self.path)
        return module_group_path(module)

    def _rows(self, module: str, name: FactorName, components: Components) -> np.ndarray:
        node = f"{self._module(module)}/{name}"
        C = self.modules[module].C
        idx = None
        if components is not None and not isinstance(components, slice):
            idx = np.asarray(components, dtype=np.int64).reshape(-1)
            if idx.size and (idx.min() < 0 or idx.max() >= C):
                raise IndexError(f"{module}: components must be in [0, {C}), got {components}")
        with guard(self.path, node):
            arr = self._root[node]
            if idx is None:
                return np.asarray(arr[components if components is not None else slice(None)])
            if idx.size == 0:
                return np.empty((0, arr.shape[1]), dtype=np.float32)
            return np.asarray(arr.get_orthogonal_selection((idx, slice(None))))

    def U(self, module: str, components: Components = None) -> np.ndarray:
        """Rows of U (each a subcomponent's output direction), shape (k, d_out)."""
        return self._rows(module, "U", components)

    def V(self, module: str, components: Components = None) -> np.ndarray:
        """Rows of V (each a subcomponent's input direction), shape (k, d_in)."""
        return self._rows(module, "V", components)

    def _ci_group(self, module: str) -> zarr.Group:
        node = f"{self._module(module)}/{CI_FN}"
        group = self._group(node)
        if "type" not in group.attrs:
            raise StoreError(
                f"factor store {self.path}: module {module!r} has no causal-importance function "
                "stored (the run did not write it)"
            )
        return group

    def ci_fn_params(self, module: str) -> dict[str, np.ndarray]:
        """The CI function's parameters, name -> float32 array, names exactly as written."""
        group = self._ci_group(module)
        with guard(self.path, f"{self._module(module)}/{CI_FN}"):
            return read_params(group, group.attrs.get("param_names"))

    def global_ci_fn(self) -> tuple[dict[str, Any], dict[str, np.ndarray]] | None:
        """(architecture attrs, parameters) of the store's one CI function for all modules, or
        None when it has per-module CI functions instead."""
        with guard(self.path, GLOBAL_CI_FN):
            if GLOBAL_CI_FN not in self._root:
                return None
        group = self._group(GLOBAL_CI_FN)
        with guard(self.path, GLOBAL_CI_FN):
            attrs = group.attrs.asdict()
            return attrs, read_params(group, attrs.get("param_names"))

    def target_state(self) -> dict[str, np.ndarray] | None:
        """The stored target model's parameters, or None if the store has none."""
        with guard(self.path, TARGET):
            if TARGET not in self._root:
                return None
        group = self._group(TARGET)
        with guard(self.path, TARGET):
            return read_params(group, group.attrs.get("names"))

    def curves(self) -> dict[str, np.ndarray]:
        """``step`` (int64) and every training curve (float64), one entry per record."""
        group = self._group(TRAINING)
        with guard(self.path, TRAINING):
            return read_curves(group)
