"""Writing labels into a store's `interp/` group, beside its harvest and never touching it or
the decomposition. In order: `spd_schema` is raised to 4 (an older spd asks to be upgraded
rather than taking the labels' files for damage); an earlier `interp/` is marked incomplete,
then replaced; every array is written; its manifest is written durably; last, its own
`complete` flag is set durably."""

from __future__ import annotations

from pathlib import Path
from typing import Any

import numpy as np
import zarr

from spd_core.harvest.writer import fill_value, set_durably
from spd_core.interp.schema import ARRAYS, COMPONENT_CHUNK, INTERP_FORMAT, MODULES_GROUP
from spd_core.store.access import PathLike, guard, open_root
from spd_core.store.codecs import CHECKED_COMPRESSORS
from spd_core.store.convert import jsonable
from spd_core.store.layout import FIRST_INTERP_SCHEMA, HARVEST, INTERP
from spd_core.store.location import Location
from spd_core.store.manifest import manifest_key, read_stored, record_manifest, write_manifest
from spd_core.store.validate import check_complete, check_schema
from spd_core.store.version import default_code_version

DESCRIPTION = (
    "Labels of components (spd autointerp): per module, one row per component, made from the "
    "harvest named by harvest_manifest_sha256 with the explainer and scorer named in the "
    "attributes; `complete` is set last, once every array and this group's integrity manifest "
    "(interp/integrity) are written."
)


def harvest_fingerprint(path: str | Path, root: zarr.Group) -> str | None:
    """SHA-256 of the harvest's integrity manifest (None without one): labels record it, and
    readers refuse labels of a harvest that has changed since."""
    ((_, stored),) = read_stored(path, root, [manifest_key(HARVEST)])
    return None if stored is None else stored.sha256


def write_interp(
    path: PathLike,
    modules: dict[str, dict[str, np.ndarray]],
    attrs: dict[str, Any],
    *,
    storage_options: dict[str, Any] | None = None,
) -> None:
    """Store `modules` (module -> array name -> one row per component, the names of
    `schema.ARRAYS`) and `attrs` under `interp/` of the complete, harvested store at `path`."""
    location = Location.of(path, storage_options)
    target, storage_options = location.where, location.storage_options
    root = open_root(target, "r+", storage_options=storage_options)
    with guard(target):
        root_attrs = root.attrs.asdict()
    schema = check_schema(root_attrs, target)
    check_complete(root_attrs, target)
    with guard(target, INTERP):
        made_from = harvest_fingerprint(target, root)
        if made_from is None:
            raise ValueError(f"{target} has no complete harvest to label")
        if schema < FIRST_INTERP_SCHEMA:
            set_durably(root, target, "", "spd_schema", FIRST_INTERP_SCHEMA)
        if INTERP in root and root[INTERP].attrs.get("complete") is True:
            set_durably(root[INTERP], target, INTERP, "complete", False)
        group_attrs = {
            "description": DESCRIPTION,
            "format": INTERP_FORMAT,
            "complete": False,
            "code_version": default_code_version(),
            "harvest_manifest_sha256": made_from,
            **jsonable(attrs, "interp attrs", nonfinite_to_null=True),
        }
        group = root.create_group(INTERP, overwrite=True, attributes=group_attrs)
        mgroups = group.create_group(MODULES_GROUP)
        for module, arrays in modules.items():
            C = int(next(iter(arrays.values())).shape[0])
            mgroup = mgroups.create_group(module, attributes={"C": C})
            for name in ARRAYS:
                data = arrays[name]
                dims, description = ARRAYS[name]
                arr = mgroup.create_array(
                    name,
                    shape=data.shape,
                    chunks=(min(C, COMPONENT_CHUNK),),
                    dtype=data.dtype,
                    fill_value=0 if data.dtype.kind in "iu" else fill_value(data.dtype),
                    dimension_names=dims,
                    attributes={"description": description},
                    compressors=CHECKED_COMPRESSORS,
                )
                arr[...] = data
        write_manifest(target, root, record_manifest(target, root, INTERP))
        set_durably(group, target, INTERP, "complete", True)
