"""Write side of the factor store: create the tree, fill it (possibly from many processes)."""

from __future__ import annotations

import math
from collections.abc import Mapping
from pathlib import Path
from typing import Any

import numpy as np
import zarr

from spd_core.store.access import PathLike, guard, open_root
from spd_core.store.codecs import CHECKED_COMPRESSORS
from spd_core.store.convert import jsonable, to_numpy
from spd_core.store.curves import (
    append_record,
    create_step_array,
    curve_arrays,
    truncate_after,
)
from spd_core.store.durable import fsync_path
from spd_core.store.errors import StoreError
from spd_core.store.layout import (
    CI_FN,
    FACTOR_DESCRIPTIONS,
    FACTOR_DIMS,
    FACTOR_NAMES,
    GLOBAL_CI_FN,
    INTEGRITY,
    MODULES,
    RESERVED_ATTRS,
    SCHEMA_VERSION,
    TARGET,
    TRAINING,
    FactorName,
    ModuleLayout,
    check_module_name,
    module_group_path,
)
from spd_core.store.location import Location
from spd_core.store.manifest import record_manifest, write_manifest
from spd_core.store.names import NAME_ATTR, node_name
from spd_core.store.validate import check_schema, read_layouts, unknown_module
from spd_core.store.version import default_code_version

ArrayLike = Any  # np.ndarray | torch.Tensor; torch is not imported here


def write_param_group(
    parent: zarr.Group,
    name: str,
    params: Mapping[str, ArrayLike],
    attrs: dict[str, Any],
    dtype: type | None,
) -> zarr.Group:
    """(Re)create group `name` under `parent` with one checksummed array per named parameter
    (state-dict names kept in each array's `name` attribute), cast to `dtype` unless None."""
    group = parent.create_group(name, overwrite=True, attributes=attrs)
    for pname, value in params.items():
        data = to_numpy(value, dtype)
        if data.dtype == object:
            raise ValueError(f"{name}/{pname}: object arrays cannot be stored")
        group.create_array(
            node_name(pname),
            data=data,
            attributes={NAME_ATTR: pname},
            compressors=CHECKED_COMPRESSORS,
        )
    return group


def _resolve_chunks(
    chunk_c: int | Mapping[str, int] | None, modules: Mapping[str, ModuleLayout]
) -> dict[str, int]:
    """Rows per chunk for every module (None or a missing entry: the whole C)."""
    if isinstance(chunk_c, Mapping):
        unknown = set(chunk_c) - set(modules)
        if unknown:
            raise ValueError(f"chunk_c names unknown modules: {sorted(unknown)}")
    out = {}
    for name, layout in modules.items():
        c = chunk_c.get(name) if isinstance(chunk_c, Mapping) else chunk_c
        if c is None:
            c = layout.C
        if not isinstance(c, int) or isinstance(c, bool) or c < 1:
            raise ValueError(f"chunk_c for {name!r} must be a positive int, got {c!r}")
        out[name] = min(c, layout.C)
    return out


def _prepare_target(path: str | Path, overwrite: bool, storage_options: dict | None) -> str:
    """The zarr open mode for creating at `path`, after refusing unsafe cases."""
    if isinstance(path, Path) and path.exists():
        if not path.is_dir():
            raise StoreError(f"cannot create a factor store at {path}: it is an existing file")
        if not any(path.iterdir()):
            return "w"
        if not (path / "zarr.json").exists():
            raise StoreError(
                f"cannot create a factor store at {path}: it is a non-empty directory that is "
                "not a Zarr store; choose another path (it is never deleted, even with overwrite)"
            )
    try:
        existing = open_root(path, "r", storage_options=storage_options)
    except StoreError as err:
        if overwrite:
            return "w"
        if isinstance(path, Path) and path.exists():
            raise StoreError(
                f"cannot create a factor store at {path}: something unreadable is there ({err}); "
                "pass overwrite=True to replace it"
            ) from err
        return "w-"
    if overwrite:
        return "w"
    state = "complete" if existing.attrs.get("complete") is True else "incomplete"
    raise StoreError(
        f"a {state} factor store already exists at {path}; pass overwrite=True to replace it "
        "or choose another path"
    )


class StoreWriter:
    """Writes one factor store. Create it once; other processes may `open_existing` it."""

    def __init__(
        self,
        root: zarr.Group,
        path: str | Path,
        modules: dict[str, ModuleLayout],
        complete: bool = False,
    ):
        """Use `create` or `open_existing`."""
        self._root = root
        self.path = path
        self.modules = dict(modules)
        self._curves: dict[str, zarr.Array] | None = None
        self._complete = complete

    @classmethod
    def create(
        cls,
        path: PathLike,
        *,
        modules: Mapping[str, ModuleLayout],
        config: dict,
        target_spec: dict,
        chunk_c: int | Mapping[str, int] | None = None,
        overwrite: bool = False,
        code_version: str | None = None,
        attrs: Mapping[str, Any] | None = None,
        storage_options: dict[str, Any] | None = None,
    ) -> StoreWriter:
        """Create the whole tree with arrays allocated and ``complete=False``.

        Refuses an existing store unless `overwrite`; never deletes a non-store directory.
        `chunk_c` is rows per chunk (int, per-module dict, or None for all of C in one chunk).
        `code_version` defaults to the installed spd version; `attrs` are extra root attrs.
        """
        if not modules:
            raise ValueError("a factor store needs at least one module")
        for name, layout in modules.items():
            check_module_name(name)
            if not isinstance(layout, ModuleLayout):
                raise TypeError(f"modules[{name!r}] must be a ModuleLayout, got {layout!r}")
        extra = dict(attrs or {})
        clash = RESERVED_ATTRS & set(extra)
        if clash:
            raise ValueError(f"attrs may not set reserved root attributes {sorted(clash)}")
        root_attrs = {
            "spd_schema": SCHEMA_VERSION,
            "complete": False,
            "config": jsonable(config, "config"),
            "target_spec": jsonable(target_spec, "target_spec"),
            "code_version": code_version or default_code_version(),
            "metrics": {},
            **jsonable(extra, "attrs"),
        }
        chunks = _resolve_chunks(chunk_c, modules)
        location = Location.of(path, storage_options)
        target, storage_options = location.where, location.storage_options
        mode = _prepare_target(target, overwrite, storage_options)
        root = open_root(target, mode, storage_options=storage_options, attributes=root_attrs)
        with guard(target):
            mods = root.create_group(MODULES)
            for name, layout in modules.items():
                group = mods.create_group(name, attributes=layout.to_attrs())
                for factor in FACTOR_NAMES:
                    group.create_array(
                        factor,
                        shape=layout.factor_shape(factor),
                        chunks=(chunks[name], layout.factor_shape(factor)[1]),
                        dtype="float32",
                        fill_value=math.nan,
                        dimension_names=FACTOR_DIMS[factor],
                        compressors=CHECKED_COMPRESSORS,
                        attributes={"description": FACTOR_DESCRIPTIONS[factor]},
                    )
                group.create_group(CI_FN)
            create_step_array(root.create_group(TRAINING))
        return cls(root, target, dict(modules))

    @classmethod
    def open_existing(
        cls,
        path: PathLike,
        *,
        allow_complete: bool = False,
        storage_options: dict[str, Any] | None = None,
    ) -> StoreWriter:
        """Reopen a store made by `create` (e.g. in a parallel worker) to write into it.

        A complete store is refused unless `allow_complete` (e.g. to add metrics later); changing
        its arrays then marks it incomplete until `mark_complete` records it again.
        """
        location = Location.of(path, storage_options)
        target, storage_options = location.where, location.storage_options
        root = open_root(target, "r+", storage_options=storage_options)
        with guard(target):
            attrs = root.attrs.asdict()
        check_schema(attrs, target)
        if attrs.get("complete") is True and not allow_complete:
            raise StoreError(
                f"factor store {target} is already complete; create a new store (or pass "
                "allow_complete=True to modify a finished one on purpose)"
            )
        return cls(root, target, read_layouts(root, target), complete=attrs.get("complete") is True)

    def _module_layout(self, module: str) -> ModuleLayout:
        if module not in self.modules:
            raise unknown_module(module, self.modules, self.path)
        return self.modules[module]

    def _module_group(self, module: str) -> zarr.Group:
        self._module_layout(module)
        with guard(self.path, module_group_path(module)):
            return self._root[module_group_path(module)]

    def _factor(self, module: str, name: FactorName) -> zarr.Array:
        if name not in FACTOR_NAMES:
            raise ValueError(f"factor name must be 'U' or 'V', got {name!r}")
        group = self._module_group(module)
        with guard(self.path, f"{module_group_path(module)}/{name}"):
            return group[name]

    def write_factor_rows(self, module: str, name: FactorName, start: int, rows: ArrayLike) -> None:
        """Write rows [start, start + len(rows)) of factor `name`; the range must cover whole
        chunks (its end may be C), because two writers sharing a chunk lose data."""
        arr = self._factor(module, name)
        expected = self.modules[module].factor_shape(name)
        data = to_numpy(rows, np.float32)
        if data.ndim != 2 or data.shape[1] != expected[1]:
            raise ValueError(
                f"{module}/{name}: rows must have shape (n, {expected[1]}), got {data.shape}"
            )
        stop = start + data.shape[0]
        if start < 0 or stop > expected[0]:
            raise ValueError(f"{module}/{name}: rows [{start}, {stop}) outside [0, {expected[0]})")
        chunk = arr.chunks[0]
        if start % chunk or (stop % chunk and stop != expected[0]):
            raise ValueError(
                f"{module}/{name}: rows [{start}, {stop}) are not aligned to chunks of {chunk} "
                "rows; parallel writers must each own whole chunks"
            )
        if data.shape[0]:
            self._reopen()
            with guard(self.path, f"{module_group_path(module)}/{name}"):
                arr[start:stop] = data

    def _replace_params(
        self,
        parent: zarr.Group,
        name: str,
        params: Mapping[str, ArrayLike],
        attrs: dict[str, Any],
        dtype: type | None,
    ) -> None:
        self._reopen()
        write_param_group(parent, name, params, attrs, dtype)

    def write_ci_fn(
        self,
        module: str,
        params: Mapping[str, ArrayLike],
        fn_type: str,
        hidden_dims: list[int],
    ) -> None:
        """Store (replace) the causal-importance function's parameters as float32 arrays."""
        group = self._module_group(module)
        attrs = {
            "type": str(fn_type),
            "hidden_dims": [int(h) for h in hidden_dims],
            "param_names": [str(k) for k in params],
        }
        with guard(self.path, f"{module_group_path(module)}/{CI_FN}"):
            self._replace_params(group, CI_FN, params, attrs, np.float32)

    def write_global_ci_fn(
        self, params: Mapping[str, ArrayLike], architecture: Mapping[str, Any]
    ) -> None:
        """Store (replace) the one CI function of all modules under ``global_ci_fn/``: its
        parameters as float32 arrays, `architecture` (type, module order, sizes, widths) as attrs."""
        unknown = [m for m in architecture.get("modules", []) if m not in self.modules]
        if unknown:
            raise ValueError(f"global CI function names modules not in the store: {unknown}")
        attrs = {**jsonable(dict(architecture), "architecture"), "param_names": list(params)}
        with guard(self.path, GLOBAL_CI_FN):
            self._replace_params(self._root, GLOBAL_CI_FN, params, attrs, np.float32)

    def write_target(self, state: Mapping[str, ArrayLike]) -> None:
        """Store (replace) the target model's parameters, dtypes kept (bfloat16 -> float32)."""
        with guard(self.path, TARGET):
            self._replace_params(self._root, TARGET, state, {"names": list(state)}, None)

    def append_curves(self, step: int, values: Mapping[str, float]) -> None:
        """Append one record of training curves at `step` (new names: NaN before now)."""
        self._reopen()
        with guard(self.path, TRAINING):
            training = self._root[TRAINING]
            if self._curves is None:
                self._curves = curve_arrays(training)
            append_record(training, self._curves, step, values)

    def truncate_curves(self, after_step: int) -> int:
        """Forget curve records after `after_step` (a run resuming from a checkpoint there)."""
        self._reopen()
        with guard(self.path, TRAINING):
            return truncate_after(self._root[TRAINING], after_step)

    def update_metrics(self, metrics: Mapping[str, Any]) -> None:
        """Merge `metrics` into the root ``metrics`` attribute (NaN/inf stored as null)."""
        new = jsonable(dict(metrics), "metrics", nonfinite_to_null=True)
        with guard(self.path):
            current = dict(self._root.attrs.get("metrics") or {})
            current.update(new)
            self._root.attrs["metrics"] = current

    def unwritten_factors(self) -> list[str]:
        """``module/U`` entries with at least one chunk never written."""
        missing = []
        for module in self.modules:
            for name in FACTOR_NAMES:
                arr = self._factor(module, name)
                with guard(self.path, f"{module_group_path(module)}/{name}"):
                    done, total = arr.nchunks_initialized, arr.nchunks
                if done < total:
                    missing.append(f"{module}/{name} ({total - done} of {total} chunks)")
        return missing

    def _set_complete(self, value: bool) -> None:
        """Write the root's ``complete`` flag; on a local store, durably (file and directory)."""
        with guard(self.path):
            self._root.attrs["complete"] = value
            if isinstance(self.path, Path):
                fsync_path(self.path / "zarr.json")
                fsync_path(self.path)
        self._complete = value

    def _reopen(self) -> None:
        """Before changing the files of a complete store (opened with allow_complete): mark it
        incomplete first, so that a crash mid-change leaves a store readers refuse;
        `mark_complete` then records it anew."""
        if self._complete:
            self._set_complete(False)

    def mark_complete(self) -> None:
        """Mark the store complete. Call LAST, after every process's writes; refuses if any
        factor chunk was never written (a chunk written as all-NaN, the fill value, counts as
        never written).

        In order: every file now in the store is read, checksummed (CRC32C) and, on a local
        filesystem, fsynced with its directory; the integrity manifest is written durably; only
        then is ``complete`` set (and fsynced). A crash anywhere before that last write leaves a
        store that readers refuse as incomplete.
        """
        missing = self.unwritten_factors()
        if missing:
            raise StoreError(
                f"factor store {self.path}: cannot mark complete, factors not fully written: "
                + ", ".join(missing)
            )
        with guard(self.path, INTEGRITY):
            write_manifest(self.path, self._root, record_manifest(self.path, self._root))
        self._set_complete(True)
