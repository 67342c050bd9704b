"""A harvest's checkpoint folder: what harvest it belongs to, and one file per finished shard
(and per finished block of logit effects). `--resume` reuses the files of the same harvest only."""

from __future__ import annotations

import json
import shutil
from dataclasses import dataclass
from pathlib import Path
from typing import Any

IDENTITY = "harvest.json"


class CheckpointError(ValueError):
    """Checkpoints that cannot be used as asked (another harvest's, or none to resume)."""


def checkpoint_dir_for(store: str | Path, given: str | Path | None) -> Path:
    """`given`, else STORE.harvest-checkpoints next to a local store."""
    if given is not None:
        return Path(given)
    if "://" in str(store):
        raise CheckpointError(
            f"{store} is not a local path: give --checkpoint-dir, a local folder for the shards"
        )
    return Path(f"{str(store).rstrip('/')}.harvest-checkpoints")


def shard_file(folder: Path, shard: int) -> Path:
    """A finished shard's statistics."""
    return folder / f"shard-{shard:06d}.npz.zst"


def block_file(folder: Path, module_index: int, start: int) -> Path:
    """A finished block's mean logit changes (module by index, components from `start`)."""
    return folder / f"logits-{module_index:04d}-{start:06d}.npz"


@dataclass
class HarvestCheckpoints:
    """The folder and the identity of the harvest whose partial results it holds."""

    folder: Path
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
        if (self.folder / IDENTITY).exists():
            return
        self.folder.mkdir(parents=True, exist_ok=True)
        tmp = self.folder / f"{IDENTITY}.partial"
        tmp.write_text(json.dumps(self.identity, indent=1, sort_keys=True))
        tmp.replace(self.folder / IDENTITY)

    def _read_identity(self) -> dict[str, Any] | None:
        path = self.folder / IDENTITY
        if not path.exists():
            if self.folder.exists() and any(self.folder.iterdir()):
                raise CheckpointError(
                    f"{self.folder} is not empty and holds no harvest checkpoints; choose "
                    "another --checkpoint-dir"
                )
            return None
        return json.loads(path.read_text())

    def remove(self) -> None:
        """Once the harvest is stored: the folder is no longer needed."""
        shutil.rmtree(self.folder, ignore_errors=True)
