"""Checks shared by the reader and by writers that reopen a store."""

from __future__ import annotations

from collections.abc import Mapping
from pathlib import Path
from typing import Any

import zarr

from spd_core.store.access import guard
from spd_core.store.errors import StoreError
from spd_core.store.layout import FACTOR_NAMES, MODULES, SCHEMA_VERSION, ModuleLayout


def check_schema(attrs: Mapping[str, Any], path: str | Path) -> int:
    """The store's schema version; StoreError if absent, malformed or newer than ours."""
    if "spd_schema" not in attrs:
        raise StoreError(
            f"{path} is a Zarr group but not an spd factor store (no 'spd_schema' attribute)"
        )
    schema = attrs["spd_schema"]
    if not isinstance(schema, int) or isinstance(schema, bool) or schema < 1:
        raise StoreError(
            f"factor store {path}: invalid spd_schema {schema!r}; the store is damaged"
        )
    if schema > SCHEMA_VERSION:
        raise StoreError(
            f"factor store {path} was written by a newer spd (schema {schema}); upgrade spd "
            f"to read it (this version reads schema <= {SCHEMA_VERSION})"
        )
    return schema


def check_complete(attrs: Mapping[str, Any], path: str | Path) -> None:
    """StoreError unless the store was marked complete by the run that wrote it."""
    if attrs.get("complete") is not True:
        raise StoreError(
            f"factor store {path} is incomplete: the run that wrote it did not finish (or is "
            "still running). Rerun the decomposition, or pass allow_incomplete=True to read "
            "what is there."
        )


def _layout_from_attrs(module: str, attrs: Mapping[str, Any], path: str | Path) -> ModuleLayout:
    try:
        return ModuleLayout(
            kind=attrs["kind"], C=attrs["C"], d_in=attrs["d_in"], d_out=attrs["d_out"]
        )
    except (KeyError, ValueError, TypeError) as err:
        raise StoreError(
            f"factor store {path}: module {module!r} has missing or invalid attributes "
            f"kind/C/d_in/d_out ({err}); the store is damaged"
        ) from err


def read_layouts(root: zarr.Group, path: str | Path) -> dict[str, ModuleLayout]:
    """Every module's layout, after checking that its U and V exist with matching shapes."""
    with guard(path, MODULES):
        modules = root[MODULES]
        if not isinstance(modules, zarr.Group):
            raise StoreError(f"factor store {path}: '{MODULES}' is not a group; store is damaged")
        members = sorted(modules.members(), key=lambda kv: kv[0])
    layouts: dict[str, ModuleLayout] = {}
    for name, group in members:
        node = f"{MODULES}/{name}"
        if not isinstance(group, zarr.Group):
            raise StoreError(f"factor store {path}: {node} is not a group; the store is damaged")
        layout = _layout_from_attrs(name, group.attrs.asdict(), path)
        for factor in FACTOR_NAMES:
            with guard(path, f"{node}/{factor}"):
                arr = group[factor]
            expected = layout.factor_shape(factor)
            if not isinstance(arr, zarr.Array) or tuple(arr.shape) != expected:
                shape = getattr(arr, "shape", "not an array")
                raise StoreError(
                    f"factor store {path}: {node}/{factor} has shape {shape} but the module's "
                    f"attributes say {expected}; the store is damaged"
                )
        layouts[name] = layout
    return layouts


def unknown_module(
    module: str, layouts: Mapping[str, ModuleLayout], path: str | Path
) -> StoreError:
    """The error for a module name the store does not have."""
    available = ", ".join(layouts) or "(none)"
    return StoreError(f"factor store {path} has no module {module!r}; available: {available}")
