"""Where a store, its checkpoints or a harvest's shards live: a local path, or a URL on an object
store (`s3://…`, `gs://…`, any fsspec protocol) with the storage options that open it.

Every command and job turns what the user gave into a `Location` here and passes the Location
on, so a URL stays a URL all the way to the Ray workers, and local paths keep working as before.
"""

from __future__ import annotations

import json
import posixpath
from collections.abc import Mapping
from dataclasses import dataclass, field, replace
from pathlib import Path
from typing import TYPE_CHECKING, Any

from spd_core.extras import require

if TYPE_CHECKING:
    from fsspec import AbstractFileSystem

# the protocol of a URL -> the Python package that implements it (see spd_core.extras)
FILESYSTEM_PACKAGES = {"s3": "s3fs", "s3a": "s3fs", "gs": "gcsfs", "gcs": "gcsfs"}


def is_url(where: str | Path | Location) -> bool:
    """True for fsspec-style URLs such as ``s3://bucket/run.zarr`` (``file://`` is local)."""
    if isinstance(where, Location):
        return where.is_url
    return isinstance(where, str) and "://" in where and not where.startswith("file://")


@dataclass(frozen=True)
class Location:
    """An absolute local `Path`, or a URL string and the fsspec storage options to open it
    (credentials, endpoint; empty: the filesystem library's own defaults, such as the
    `AWS_*` environment variables)."""

    where: str | Path
    storage_options: dict[str, Any] = field(default_factory=dict)

    @classmethod
    def of(
        cls, where: str | Path | Location, storage_options: Mapping[str, Any] | None = None
    ) -> Location:
        """The location `where` names; a Location is kept, its options updated by
        `storage_options`. Local paths (and ``file://`` URLs) become absolute."""
        extra = dict(storage_options or {})
        if isinstance(where, Location):
            return replace(where, storage_options={**where.storage_options, **extra})
        if is_url(where):
            return cls(str(where).rstrip("/"), extra)
        return cls(Path(str(where).removeprefix("file://")).expanduser().absolute())

    @property
    def is_url(self) -> bool:
        return isinstance(self.where, str)

    @property
    def protocol(self) -> str:
        """``s3``, ``gs``, … for a URL; ``file`` for a local path."""
        return self.where.split("://", 1)[0] if isinstance(self.where, str) else "file"

    @property
    def name(self) -> str:
        """The last part: ``run.zarr`` of ``s3://bucket/runs/run.zarr``."""
        return posixpath.basename(self.where) if self.is_url else self.path.name

    @property
    def path(self) -> Path:
        """The local path (only for a local location)."""
        if not isinstance(self.where, Path):
            raise TypeError(f"{self.where} is a URL, not a local path")
        return self.where

    def sibling(self, suffix: str) -> Location:
        """`<this><suffix>` on the same filesystem: ``s3://b/run.zarr.checkpoints``."""
        if isinstance(self.where, str):
            return replace(self, where=f"{self.where}{suffix}")
        return replace(self, where=Path(f"{self.where}{suffix}"))

    def child(self, name: str) -> Location:
        """`<this>/<name>` on the same filesystem."""
        if isinstance(self.where, str):
            return replace(self, where=f"{self.where}/{name}")
        return replace(self, where=self.where / name)

    @property
    def parent(self) -> Location:
        """The folder (or prefix) holding this location."""
        if isinstance(self.where, str):
            return replace(self, where=self.where.rsplit("/", 1)[0])
        return replace(self, where=self.where.parent)

    def filesystem(self) -> tuple[AbstractFileSystem, str]:
        """The fsspec filesystem and the path within it (``bucket/key`` for a URL). A missing
        filesystem package is a one-line MissingExtraError naming the extra that installs it."""
        import fsspec

        if not isinstance(self.where, str):
            return fsspec.filesystem("file"), str(self.where)
        package = FILESYSTEM_PACKAGES.get(self.protocol)
        if package is not None:
            require(package, f"a store on {self.protocol}:// ({self.where})")
        # other processes (Ray workers) add objects here: never answer from a stale listing
        options = {"use_listings_cache": False, **self.storage_options}
        fs, path = fsspec.core.url_to_fs(self.where, **options)
        return fs, path

    @property
    def fs_path(self) -> str:
        """The path within `filesystem()`: ``bucket/key`` for a URL, the local path else."""
        return self.filesystem()[1]

    def exists(self) -> bool:
        """Whether anything is there (a file, a folder, or objects under the prefix)."""
        if isinstance(self.where, Path):
            return self.where.exists()
        fs, path = self.filesystem()
        return fs.exists(path)

    def is_file(self) -> bool:
        if isinstance(self.where, Path):
            return self.where.is_file()
        fs, path = self.filesystem()
        return fs.isfile(path)

    def names(self) -> list[str]:
        """The names directly inside this folder (empty when it does not exist)."""
        if isinstance(self.where, Path):
            return sorted(p.name for p in self.where.iterdir()) if self.where.is_dir() else []
        fs, path = self.filesystem()
        try:
            found = fs.ls(path, detail=False)
        except FileNotFoundError:
            return []
        return sorted(posixpath.basename(str(p).rstrip("/")) for p in found)

    def read_bytes(self) -> bytes:
        if isinstance(self.where, Path):
            return self.where.read_bytes()
        fs, path = self.filesystem()
        return fs.cat_file(path)

    def write_whole(self, data: bytes) -> None:
        """Write `data` here so that readers see all of it or nothing: locally through a
        temporary file renamed into place; on an object store with one PUT (atomic there)."""
        if isinstance(self.where, Path):
            tmp = self.where.with_name(f"{self.where.name}.partial")
            tmp.write_bytes(data)
            tmp.replace(self.where)
            return
        fs, path = self.filesystem()
        fs.pipe_file(path, data)

    def remove(self) -> None:
        """Delete this folder (or file) and everything in it; nothing there is not an error."""
        fs, path = self.filesystem()
        if fs.exists(path):
            fs.rm(path, recursive=True)

    def __str__(self) -> str:
        return str(self.where)

    def __repr__(self) -> str:  # the options' values may be secrets: name only their keys
        keys = ", ".join(sorted(self.storage_options))
        return f"Location({str(self.where)!r}, storage_options=<{keys}>)"

    def __hash__(self) -> int:
        options = json.dumps(self.storage_options, sort_keys=True, default=repr)
        return hash((str(self.where), options))
