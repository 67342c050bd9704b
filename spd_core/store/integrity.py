"""The check every reader makes on a complete store: one listing compared with the manifest.

Every recorded file must be there with its recorded size, and no chunk may have appeared in a
recorded array since completion. That catches deleted and truncated chunks and most damaged
metadata for the cost of a listing; `verify_store` also reads every byte.
"""

from __future__ import annotations

import warnings
from collections.abc import Mapping
from dataclasses import asdict, dataclass
from pathlib import Path
from typing import Any

import zarr

from spd_core.store.errors import StoreError
from spd_core.store.layout import FIRST_VERIFIABLE_SCHEMA
from spd_core.store.listing import list_objects
from spd_core.store.manifest import METADATA, Manifest, covered, read_manifest

_SHOWN = 5  # problems named in a reader's error message


_HEADLINES = {
    "missing": "missing {what}",
    "size": "{what} of the wrong size",
    "checksum": "{what} with the wrong checksum",
    "unexpected": "{what} added after completion",
    "metadata": "unreadable metadata",
    "manifest": "unreadable integrity manifest",
    "incomplete": "incomplete store",
    "schema": "shapes not as the schema says",
}


class UnverifiableStoreWarning(UserWarning):
    """A complete store written before integrity manifests: it opens, but unchecked."""


def unverifiable_note(schema: int) -> str:
    """What to tell the user about a complete store of a schema without manifests."""
    return (
        f"written before integrity manifests (schema {schema}), so it cannot be verified: a "
        "deleted chunk would read as NaN. Rewrite it with this spd to get a verifiable store."
    )


@dataclass(frozen=True)
class Problem:
    """One way a store differs from what it must be."""

    kind: str
    """missing | size | checksum | unexpected | metadata | manifest | incomplete | schema"""
    node: str
    """The array or group concerned ("" for the store itself)."""
    key: str
    """The file within the node: a chunk key ("c/0/0") or "zarr.json"; "" when none."""
    expected: str
    found: str

    @property
    def what(self) -> str:
        """'chunk', 'metadata' or 'store'."""
        if self.key == METADATA:
            return "metadata"
        return "chunk" if self.key else "store"

    def location(self, path: str | Path) -> str:
        """Where the problem is: the file's full path or URL."""
        parts = [p for p in (str(path), self.node, self.key) if p]
        return "/".join(parts)

    def describe(self, path: str | Path) -> str:
        """One line a person can act on."""
        headline = _HEADLINES[self.kind].format(what=self.what)
        return f"{headline}: {self.location(path)} (expected {self.expected}; found {self.found})"

    def to_json(self) -> dict[str, Any]:
        return {**asdict(self), "what": self.what}


def describe_entry(size: int, sha256: str) -> str:
    """A recorded file as it must be."""
    return f"{size} bytes, sha256 {sha256}"


def compare_listing(manifest: Manifest, listing: Mapping[str, int]) -> list[Problem]:
    """Recorded files that are absent or of another size, and chunks of recorded arrays (or
    metadata of nodes) that appeared after completion; sorted by node and file."""
    problems = []
    for key, (size, sha256) in manifest.files.items():
        found = listing.get(key)
        if found == size:
            continue
        node, sub = manifest.locate(key)
        if found is None:
            problems.append(Problem("missing", node, sub, describe_entry(size, sha256), "absent"))
        else:
            problems.append(Problem("size", node, sub, f"{size} bytes", f"{found} bytes"))
    for key in covered(listing.keys() - manifest.files.keys(), manifest.arrays, manifest.scope):
        node, sub = manifest.locate(key)
        expected = "absent (not in the manifest)"
        problems.append(Problem("unexpected", node, sub, expected, f"{listing[key]} bytes"))
    return sorted(problems, key=lambda p: (p.node, p.key))


def damaged_message(path: str | Path, problems: list[Problem]) -> str:
    """The reader's refusal: the first problems, how many more, and what to do."""
    shown = "; ".join(p.describe(path) for p in problems[:_SHOWN])
    more = f"; and {len(problems) - _SHOWN} more" if len(problems) > _SHOWN else ""
    return (
        f"factor store {path} is damaged: {len(problems)} problem(s) against the integrity "
        f"manifest written when it was completed: {shown}{more}. Run `spd verify {path}` for "
        "a full check; rewrite the store or restore it from a copy."
    )


def check_integrity(path: str | Path, root: zarr.Group, schema: int) -> str | None:
    """For a complete store: StoreError if its listing differs from its manifest; the
    unverifiable note (also issued as an UnverifiableStoreWarning) for an older schema."""
    if schema < FIRST_VERIFIABLE_SCHEMA:
        note = unverifiable_note(schema)
        warnings.warn(f"factor store {path} was {note}", UnverifiableStoreWarning, stacklevel=3)
        return note
    manifest = read_manifest(path, root)
    problems = compare_listing(manifest, list_objects(path, root))
    if problems:
        raise StoreError(damaged_message(path, problems))
    return None
