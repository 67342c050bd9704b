"""One listing of every object in a store, with sizes: the cheap half of the integrity check."""

from __future__ import annotations

import os
from pathlib import Path

import zarr
from zarr.core.sync import sync
from zarr.storage import FsspecStore

from spd_core.store.access import guard


def _walk_local(directory: str, prefix: str, out: dict[str, int]) -> None:
    with os.scandir(directory) as entries:
        for entry in entries:
            if entry.is_dir(follow_symlinks=False):
                _walk_local(entry.path, f"{prefix}{entry.name}/", out)
            elif entry.is_file():
                out[f"{prefix}{entry.name}"] = entry.stat().st_size


def list_objects(path: str | Path, root: zarr.Group) -> dict[str, int]:
    """Key (relative to the store root, '/'-separated) -> size in bytes of every stored object.

    A local store is walked with `os.scandir` (one stat per file); a URL store is listed with its
    filesystem's recursive `find`, whose answer carries the sizes (one paged LIST on S3/GCS).
    """
    with guard(path, "(listing)"):
        if isinstance(path, Path):
            out: dict[str, int] = {}
            _walk_local(str(path), "", out)
            return out
        store = root.store
        if not isinstance(store, FsspecStore):
            raise TypeError(f"cannot list a {type(store).__name__}")
        base = store.path.rstrip("/")
        found = sync(store.fs._find(base, detail=True))
        return {
            name[len(base) :].lstrip("/"): int(info["size"])
            for name, info in found.items()
            if info.get("type", "file") == "file" and name.startswith(base)
        }
