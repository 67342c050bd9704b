"""Writing a harvest into a complete factor store, without touching its decomposition.

In order: the store's `spd_schema` is raised to 3 (so an older spd says "upgrade" instead of
taking the harvest's files for damage); an earlier harvest is marked incomplete, then replaced;
every array is written; the harvest's manifest is recorded and written durably; last, the
harvest's own `complete` flag is set and made durable. A crash anywhere leaves the decomposition
as it was and a harvest that readers refuse as incomplete.
"""

from __future__ import annotations

import math
from pathlib import Path
from typing import Any

import numpy as np
import zarr

from spd_core.harvest.schema import (
    ALWAYS,
    COMPONENT_CHUNK,
    HARVEST_FORMAT,
    LOGITS,
    MODULES_GROUP,
    TOKENS,
)
from spd_core.harvest.summarize import HarvestResult
from spd_core.store.access import PathLike, guard, open_root
from spd_core.store.codecs import CHECKED_COMPRESSORS
from spd_core.store.convert import jsonable
from spd_core.store.durable import fsync_path
from spd_core.store.layout import FIRST_HARVEST_SCHEMA, HARVEST
from spd_core.store.location import Location
from spd_core.store.manifest import (
    MANIFEST_KEY,
    METADATA,
    read_stored,
    record_manifest,
    write_manifest,
)
from spd_core.store.validate import check_complete, check_schema
from spd_core.store.version import default_code_version

SPEC = {**ALWAYS, **TOKENS, **LOGITS}
DESCRIPTION = (
    "Dataset-scale statistics of every component (spd harvest): per module, arrays with one row "
    "per component; `complete` is set last, once every array and the harvest's integrity "
    "manifest (harvest/integrity) are written."
)


def decomposition_fingerprint(path: str | Path, root: zarr.Group) -> str | None:
    """SHA-256 of the decomposition's integrity manifest (None for a schema-1 store): a harvest
    records it, and readers refuse a harvest of a decomposition that has changed since."""
    ((_, stored),) = read_stored(path, root, [MANIFEST_KEY])
    return None if stored is None else stored.sha256


def set_durably(group: zarr.Group, path: str | Path, node: str, key: str, value: Any) -> None:
    """Set attribute `key` of `group` (the node `node` of the store at `path`) and, on a local
    disk, fsync its metadata document and directory."""
    group.attrs[key] = value
    if isinstance(path, Path):
        meta = path / node / METADATA if node else path / METADATA
        fsync_path(meta)
        fsync_path(meta.parent)


def fill_value(dtype: np.dtype) -> Any:
    """What an unfilled entry holds: NaN, -1 or ""."""
    if dtype.kind == "f":
        return math.nan
    if dtype.kind in "iu":
        return -1
    return ""


def write_harvest(
    path: PathLike, result: HarvestResult, *, storage_options: dict[str, Any] | None = None
) -> None:
    """Store `result` under `harvest/` of the complete store at `path` (replacing a harvest)."""
    location = Location.of(path, storage_options)
    target, storage_options = location.where, location.storage_options
    root = open_root(target, "r+", storage_options=storage_options)
    with guard(target):
        attrs = root.attrs.asdict()
    schema = check_schema(attrs, target)
    check_complete(attrs, target)
    with guard(target, HARVEST):
        if schema < FIRST_HARVEST_SCHEMA:
            set_durably(root, target, "", "spd_schema", FIRST_HARVEST_SCHEMA)
        if HARVEST in root and root[HARVEST].attrs.get("complete") is True:
            set_durably(root[HARVEST], target, HARVEST, "complete", False)
        group_attrs = {
            "description": DESCRIPTION,
            "format": HARVEST_FORMAT,
            "complete": False,
            "code_version": default_code_version(),
            "decomposition_manifest_sha256": decomposition_fingerprint(target, root),
            **jsonable(result.attrs, "harvest attrs", nonfinite_to_null=True),
        }
        group = root.create_group(HARVEST, overwrite=True, attributes=group_attrs)
        modules = group.create_group(MODULES_GROUP)
        for module, arrays in result.modules.items():
            C = int(next(iter(arrays.values())).shape[0])
            mgroup = modules.create_group(module, attributes={"C": C})
            for name, data in arrays.items():
                dims, description = SPEC[name]
                arr = mgroup.create_array(
                    name,
                    shape=data.shape,
                    chunks=(min(C, COMPONENT_CHUNK), *data.shape[1:]),
                    dtype=data.dtype,
                    fill_value=fill_value(data.dtype),
                    dimension_names=dims,
                    attributes={"description": description},
                    compressors=CHECKED_COMPRESSORS,
                )
                arr[...] = data
        write_manifest(target, root, record_manifest(target, root, HARVEST))
        set_durably(group, target, HARVEST, "complete", True)
