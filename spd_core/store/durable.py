"""Durable writes on a local filesystem: what "written" means before a store is marked complete.

POSIX makes a file's bytes and its directory entry durable only after `fsync` of the file and of
its directory; `os.replace` is atomic but not durable by itself. Object stores (S3, GCS, Azure)
have no such step: a PUT that returned is durable and atomic, and later reads and listings see
it, so there writing in order is enough.
"""

from __future__ import annotations

import os
import uuid
from pathlib import Path


def fsync_path(path: Path) -> None:
    """Flush a file's (or a directory's entries') data to the device; works on any process's
    writes, since the page cache is shared."""
    fd = os.open(path, os.O_RDONLY)
    try:
        os.fsync(fd)
    finally:
        os.close(fd)


def read_synced(path: Path) -> bytes:
    """The bytes of `path`, after making them durable (one open for both)."""
    fd = os.open(path, os.O_RDONLY)
    try:
        os.fsync(fd)
        with os.fdopen(os.dup(fd), "rb") as f:
            return f.read()
    finally:
        os.close(fd)


def write_durably(path: Path, data: bytes) -> None:
    """Replace `path` with `data` atomically and durably: a temporary file is written and
    fsynced, renamed over `path`, and the directory fsynced. A crash leaves the old file or the
    new one, never a mix (at worst a stray `*.partial` file)."""
    if not path.parent.exists():
        path.parent.mkdir()
        fsync_path(path.parent.parent)
    tmp = path.with_name(f"{path.name}.{uuid.uuid4().hex}.partial")
    with open(tmp, "wb") as f:
        f.write(data)
        f.flush()
        os.fsync(f.fileno())
    os.replace(tmp, path)
    fsync_path(path.parent)
