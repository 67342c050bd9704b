"""The integrity manifest: every file a complete store must have, with its size and SHA-256.

It is the attributes of the group `integrity` (a plain Zarr v3 group, so any Zarr reader finds
it), written when the store is marked complete, from one walk of the whole tree: every array's
metadata and stored chunks, every group's metadata, whatever groups exist (nothing is listed by
name). Left out: the root `zarr.json` (its attributes hold `complete` and metrics, updated after
completion) and the manifest itself. A chunk absent at completion is absent on purpose (Zarr
does not store chunks equal to the fill value) and must stay absent.

A manifest has a scope: the decomposition's (scope "", everything but `harvest/` and `interp/`),
the harvest's (scope "harvest": everything under `harvest/` but its own `zarr.json`, which holds
the harvest's `complete` flag, and its manifest `harvest/integrity`) or the labels' (scope
"interp", the same under `interp/`). A harvest or labels, written after the decomposition was
completed, thus never change what the decomposition's manifest records.
"""

from __future__ import annotations

import hashlib
import json
from collections.abc import Iterable, Iterator, Mapping, Set
from concurrent.futures import ThreadPoolExecutor
from dataclasses import dataclass
from pathlib import Path
from typing import Final

import zarr
from zarr.core.buffer import default_buffer_prototype
from zarr.core.sync import sync

from spd_core.store.durable import fsync_path, read_synced, write_durably
from spd_core.store.errors import StoreError
from spd_core.store.layout import HARVEST, INTEGRITY, INTERP, PRODUCTS
from spd_core.store.listing import list_objects

ALGORITHM: Final = "sha256"
METADATA: Final = "zarr.json"
MANIFEST_KEY: Final = f"{INTEGRITY}/{METADATA}"
SCOPES: Final = ("", *PRODUCTS)  # the decomposition's manifest, the harvest's, the labels'
PARTIAL_SUFFIX: Final = ".partial"  # Zarr's (and our) temporary files, renamed when written
_REMOTE_BATCH = 64  # objects fetched concurrently from a URL store
_THREADS = 8  # local files read (and fsynced) concurrently
_DESCRIPTION = (
    "Integrity manifest, written when the store was marked complete: every file the store must "
    "have (relative key -> [size in bytes, SHA-256 of its bytes, hex]), except the root "
    "zarr.json and this one. `spd verify` checks it; every reader checks the listing against it."
)


def digest(data: bytes) -> str:
    """SHA-256 of `data`, hex. (Not CRC32C: every chunk already ends in Zarr's CRC32C of its
    bytes, and the CRC32C of such a codeword is one constant for all intact chunks, so it could
    not tell a chunk from another intact one of the same size.)"""
    return hashlib.sha256(data).hexdigest()


def is_metadata(key: str) -> bool:
    """Whether `key` is a node's metadata document."""
    return key == METADATA or key.endswith(f"/{METADATA}")


def node_path(meta_key: str) -> str:
    """The node a metadata key belongs to ("" for the root)."""
    return meta_key[: -len(METADATA)].rstrip("/")


def scope_prefix(scope: str) -> str:
    """The key prefix of a scope's files: "" for the decomposition, "harvest/" for the harvest,
    "interp/" for the labels."""
    if scope not in SCOPES:
        raise ValueError(f"manifest scope must be one of {SCOPES}, got {scope!r}")
    return f"{scope}/" if scope else ""


def manifest_key(scope: str = "") -> str:
    """Where a scope's manifest lives: `integrity/zarr.json`, `harvest/integrity/zarr.json` or
    `interp/integrity/zarr.json`."""
    return f"{scope_prefix(scope)}{MANIFEST_KEY}"


def tracked(key: str, scope: str = "") -> bool:
    """Whether `key` may be in a manifest of `scope` (in the scope, and not the scope's own
    metadata, its manifest or a temporary file)."""
    prefix = scope_prefix(scope)
    inside = (
        key.startswith(prefix) if scope else not key.startswith(tuple(f"{p}/" for p in PRODUCTS))
    )
    excluded = key == f"{prefix}{METADATA}" or key.startswith(f"{prefix}{INTEGRITY}/")
    return inside and not excluded and not key.endswith(PARTIAL_SUFFIX)


def array_of(key: str, arrays: Set[str]) -> str | None:
    """The array in `arrays` that chunk key `key` belongs to, if any."""
    node = key
    while "/" in node:
        node = node.rpartition("/")[0]
        if node in arrays:
            return node
    return None


def covered(keys: Iterable[str], arrays: Set[str], scope: str = "") -> list[str]:
    """The keys among `keys` that a manifest of `scope` over `arrays` records: every node's
    metadata and every stored chunk of those arrays (stray files in groups are not part of the
    store)."""
    return sorted(
        k for k in keys if tracked(k, scope) and (is_metadata(k) or array_of(k, arrays) is not None)
    )


@dataclass(frozen=True)
class Manifest:
    """Key -> (size, SHA-256) of every recorded file, and the paths of the arrays it holds;
    `scope` says which part of the store it covers (not stored: it is where the manifest is)."""

    files: Mapping[str, tuple[int, str]]
    arrays: frozenset[str]
    scope: str = ""

    def to_metadata(self) -> bytes:
        """The `integrity` group's zarr.json."""
        attrs = {
            "description": _DESCRIPTION,
            "algorithm": ALGORITHM,
            "arrays": sorted(self.arrays),
            "files": {k: list(v) for k, v in sorted(self.files.items())},
        }
        doc = {"zarr_format": 3, "node_type": "group", "attributes": attrs}
        return json.dumps(doc, separators=(",", ":")).encode()

    @classmethod
    def from_metadata(cls, data: bytes, scope: str = "") -> Manifest:
        """Parse the `integrity` group's zarr.json; ValueError/KeyError/TypeError if it is not
        a manifest."""
        attrs = json.loads(data)["attributes"]
        if attrs.get("algorithm") != ALGORITHM:
            raise ValueError(f"unknown checksum algorithm {attrs.get('algorithm')!r}")
        files = {str(k): (int(v[0]), str(v[1])) for k, v in attrs["files"].items()}
        return cls(files, frozenset(str(a) for a in attrs["arrays"]), scope)

    def locate(self, key: str) -> tuple[str, str]:
        """(node, key within it): ("modules/m/U", "c/0/0") for a chunk of a recorded array,
        ("modules/m", "zarr.json") for metadata, ("", key) for anything else."""
        if is_metadata(key):
            return node_path(key), METADATA
        array = array_of(key, self.arrays)
        return (array, key[len(array) + 1 :]) if array is not None else ("", key)


@dataclass(frozen=True)
class Stored:
    """What reading one stored object found: its size and SHA-256, and, for a metadata document
    (small), its bytes."""

    size: int
    sha256: str
    document: bytes | None


def _stored(key: str, data: bytes) -> Stored:
    return Stored(len(data), digest(data), data if is_metadata(key) else None)


def _read_local(path: Path, key: str, fsync: bool) -> Stored | None:
    try:
        data = read_synced(path / key) if fsync else (path / key).read_bytes()
    except (FileNotFoundError, IsADirectoryError):
        return None
    return _stored(key, data)


def read_stored(
    path: str | Path, root: zarr.Group, keys: list[str], *, fsync: bool = False
) -> Iterator[tuple[str, Stored | None]]:
    """(key, what is stored there, or None when absent) for each key, in order. Local files are
    read by _THREADS threads (hashing and fsync release the GIL; concurrent fsyncs share journal
    commits) and, with `fsync`, made durable on the way; a URL store's objects are fetched
    _REMOTE_BATCH at a time. Only digests are kept, so memory stays at a few chunks."""
    if isinstance(path, Path):
        with ThreadPoolExecutor(_THREADS) as pool:
            yield from zip(keys, pool.map(lambda k: _read_local(path, k, fsync), keys), strict=True)
        return
    store = root.store
    base = store.path.rstrip("/")  # type: ignore[attr-defined]
    for start in range(0, len(keys), _REMOTE_BATCH):
        batch = keys[start : start + _REMOTE_BATCH]
        paths = [f"{base}/{k}" for k in batch]
        found = sync(store.fs._cat(paths, on_error="return"))  # type: ignore[attr-defined]
        for key, p in zip(batch, paths, strict=True):
            value = found.get(p)
            yield key, _stored(key, value) if isinstance(value, bytes) else None


def _fsync_all(paths: Iterable[Path]) -> None:
    with ThreadPoolExecutor(_THREADS) as pool:
        list(pool.map(fsync_path, paths))


def record_manifest(path: str | Path, root: zarr.Group, scope: str = "") -> Manifest:
    """Walk the whole store, read (and locally fsync, with its directory) every file of `scope`
    it must keep, and return the manifest of what is there now."""
    listing = list_objects(path, root)
    arrays: set[str] = set()
    files: dict[str, tuple[int, str]] = {}

    def record(keys: list[str]) -> Iterator[tuple[str, Stored]]:
        for key, stored in read_stored(path, root, keys, fsync=True):
            if stored is None:
                raise StoreError(f"factor store {path}: {key} vanished while being completed")
            files[key] = (stored.size, stored.sha256)
            yield key, stored

    meta_keys = [k for k in covered(listing, frozenset(), scope) if is_metadata(k)]
    for key, stored in record(meta_keys):
        try:
            node_type = json.loads(stored.document or b"").get("node_type")
        except (ValueError, AttributeError) as err:
            raise StoreError(
                f"factor store {path}: cannot mark complete, {path}/{key} is not a JSON object "
                f"({err}); the store is damaged"
            ) from err
        if node_type == "array":
            arrays.add(node_path(key))
    for _ in record([k for k in covered(listing, arrays, scope) if not is_metadata(k)]):
        pass
    if isinstance(path, Path):
        _fsync_all(sorted({(path / k).parent for k in files} | {path}))
    return Manifest(files, frozenset(arrays), scope)


def write_manifest(path: str | Path, root: zarr.Group, manifest: Manifest) -> None:
    """Store the manifest durably (local: fsynced file and directory; URL: one PUT)."""
    data = manifest.to_metadata()
    key = manifest_key(manifest.scope)
    if isinstance(path, Path):
        write_durably(path / key, data)
        return
    buffer = default_buffer_prototype().buffer.from_bytes(data)
    sync(root.store.set(key, buffer))


def read_manifest(path: str | Path, root: zarr.Group, scope: str = "") -> Manifest:
    """The manifest of a complete schema-2 store (or of its complete harvest or labels, scope
    "harvest" or "interp"); StoreError if it is missing or unreadable."""
    key = manifest_key(scope)
    ((_, stored),) = read_stored(path, root, [key])
    what = {"": "it", HARVEST: "its harvest", INTERP: "its labels"}[scope]
    if stored is None:
        raise StoreError(
            f"factor store {path}: {what} is marked complete but has no integrity manifest "
            f"({path}/{key} is missing); the store is damaged. Rewrite it or restore "
            "it from a copy."
        )
    try:
        return Manifest.from_metadata(stored.document or b"", scope)
    except (ValueError, KeyError, TypeError, IndexError) as err:
        raise StoreError(
            f"factor store {path}: corrupt integrity manifest {path}/{key} "
            f"({type(err).__name__}: {err}); the store is damaged. Rewrite it or restore it "
            "from a copy."
        ) from err
