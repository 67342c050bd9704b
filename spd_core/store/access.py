"""Opening a store's root group and turning low-level Zarr/IO failures into StoreError."""

from __future__ import annotations

import json
from collections.abc import Iterator
from contextlib import contextmanager
from pathlib import Path
from typing import Any, Literal

import zarr
from zarr.errors import ContainsArrayError, GroupNotFoundError

from spd_core.store.errors import StoreError
from spd_core.store.location import Location

PathLike = str | Path | Location


def corrupt_metadata_files(path: str | Path) -> list[str]:
    """Local ``zarr.json`` files under `path` that are not valid JSON (for error messages)."""
    if not isinstance(path, Path) or not path.is_dir():
        return []
    bad = []
    for meta in sorted(path.rglob("zarr.json")):
        try:
            json.loads(meta.read_text(encoding="utf-8"))
        except (OSError, ValueError):
            bad.append(str(meta))
    return bad


def describe_failure(path: str | Path, node: str, err: BaseException) -> str:
    """A message for a failure reading `node` of the store at `path`."""
    where = f"{path}/{node}" if node else str(path)
    bad = corrupt_metadata_files(path)
    hint = f" Corrupt metadata file(s): {', '.join(bad)}." if bad else ""
    return (
        f"factor store {path}: corrupt or unreadable data at {where} "
        f"({type(err).__name__}: {err}).{hint} The store is damaged; rewrite it with "
        "`StoreWriter.create(..., overwrite=True)` or restore it from a copy."
    )


@contextmanager
def guard(path: str | Path, node: str = "") -> Iterator[None]:
    """Re-raise any non-StoreError failure inside the block as a StoreError naming `node`."""
    try:
        yield
    except StoreError:
        raise
    except KeyError as err:
        raise StoreError(
            f"factor store {path}: missing node {node or err}; the store is incomplete or "
            "damaged. Rewrite it."
        ) from err
    except Exception as err:
        raise StoreError(describe_failure(path, node, err)) from err


def open_root(
    path: str | Path,
    mode: Literal["r", "r+", "w", "w-"],
    *,
    storage_options: dict[str, Any] | None = None,
    attributes: dict[str, Any] | None = None,
) -> zarr.Group:
    """Open the store's root group, with a StoreError that says what is wrong."""
    kwargs: dict[str, Any] = {"mode": mode, "zarr_format": 3, "use_consolidated": False}
    if storage_options:
        kwargs["storage_options"] = storage_options
    if attributes is not None:
        kwargs["attributes"] = attributes
    if mode in ("r", "r+") and isinstance(path, Path) and not path.exists():
        raise StoreError(f"no factor store at {path}: the path does not exist")
    try:
        return zarr.open_group(path, **kwargs)
    except ContainsArrayError as err:
        raise StoreError(
            f"{path} is a Zarr array, not a factor store (which is a Zarr group)"
        ) from err
    except GroupNotFoundError as err:  # a subclass of FileNotFoundError: test it first
        raise StoreError(
            f"{path} is not a factor store: it has no Zarr v3 group metadata (zarr.json). "
            "Check the path; stores are written by `spd` decompositions."
        ) from err
    except FileNotFoundError as err:
        raise StoreError(f"no factor store at {path}: the path does not exist") from err
    except Exception as err:
        raise StoreError(describe_failure(path, "zarr.json", err)) from err
