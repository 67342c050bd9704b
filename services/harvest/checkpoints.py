"""A harvest's checkpoint folder: what harvest it belongs to, and one file per finished shard
(and per finished block of logit effects). `--resume` reuses the files of the same harvest only."""

from __future__ import annotations

import json
from dataclasses import dataclass
from pathlib import Path
from typing import Any

from spd_core.store.location import Location

IDENTITY = "harvest.json"


class CheckpointError(ValueError):
    """Checkpoints that cannot be used as asked (another harvest's, or none to resume)."""


def checkpoint_dir_for(
    store: str | Path | Location, given: str | Path | Location | None
) -> Location:
    """`given` (a path or a URL, opened with the store's storage options), else
    STORE.harvest-checkpoints beside the store, on the same filesystem."""
    found = Location.of(store)
    if given is None:
        return found.sibling(".harvest-checkpoints")
    folder = Location.of(given)
    return Location.of(folder, found.storage_options) if folder.is_url else folder


def shard_file(folder: Location, shard: int) -> Location:
    """A finished shard's statistics."""
    return folder.child(f"shard-{shard:06d}.npz.zst")


def block_file(folder: Location, module_index: int, start: int) -> Location:
    """A finished block's mean logit changes (module by index, components from `start`)."""
    return folder.child(f"logits-{module_index:04d}-{start:06d}.npz")


@dataclass
class HarvestCheckpoints:
    """The folder (local or on an object store) and the identity of the harvest whose partial
    results it holds."""

    folder: Location
    identity: dict[str, Any]

    def check(self, resume: bool) -> None:
        """Check the folder against this harvest, before any work (nothing is written). Without
        `resume` an earlier harvest's folder is refused; with it, a missing folder, or one of
        another harvest (other store, decomposition, inputs or settings)."""
        found = self._read_identity()
        if found is None:
            if resume:
                raise CheckpointError(
                    f"--resume: no harvest checkpoints at {self.folder}; start the harvest "
                    "without --resume"
                )
        elif not resume:
            raise CheckpointError(
                f"checkpoints of an unfinished harvest are in {self.folder}: continue it with "
                "--resume, or delete that folder to start again"
            )
        elif found != self.identity:
            differ = sorted(
                k for k in {*found, *self.identity} if found.get(k) != self.identity.get(k)
            )
            raise CheckpointError(
                f"--resume: the checkpoints in {self.folder} belong to a different harvest "
                f"(it differs in {', '.join(differ)}: "
                + "; ".join(
                    f"{k} was {found.get(k)!r}, now {self.identity.get(k)!r}" for k in differ
                )
                + "). Run it with the same options, or delete that folder to start again"
            )

    def prepare(self) -> None:
        """Create the folder with this harvest's identity (once checked)."""
        identity = self.folder.child(IDENTITY)
        if identity.exists():
            return
        if not self.folder.is_url:
            self.folder.path.mkdir(parents=True, exist_ok=True)
        identity.write_whole(json.dumps(self.identity, indent=1, sort_keys=True).encode())

    def _read_identity(self) -> dict[str, Any] | None:
        identity = self.folder.child(IDENTITY)
        if not identity.is_file():
            if self.folder.names():
                raise CheckpointError(
                    f"{self.folder} is not empty and holds no harvest checkpoints; choose "
                    "another --checkpoint-dir"
                )
            return None
        return json.loads(identity.read_bytes())

    def remove(self) -> None:
        """Once the harvest is stored: the folder is no longer needed."""
        self.folder.remove()
