"""The progress of a labelling run, one JSON line per finished step, so that a stopped run
resumes without asking again for a component already labelled (or scored). The first line holds
the run's settings; a resumed run must have the same."""

from __future__ import annotations

import json
import os
from pathlib import Path
from typing import Any


class CheckpointError(ValueError):
    """A checkpoint that does not fit the command (exists without --resume, other settings)."""


def checkpoint_path(store: str | Path) -> Path:
    """Where a run on `store` keeps its progress: `STORE.autointerp-checkpoint.jsonl`."""
    text = str(store).rstrip("/")
    if "://" in text and not text.startswith("file://"):
        raise CheckpointError(
            f"{store}: spd autointerp labels stores on a local disk; copy it here first"
        )
    return Path(text.removeprefix("file://") + ".autointerp-checkpoint.jsonl")


def _differences(old: dict[str, Any], new: dict[str, Any]) -> list[str]:
    return [
        f"{k} {old.get(k)!r} (now {new.get(k)!r})"
        for k in sorted(old.keys() | new.keys())
        if old.get(k) != new.get(k)
    ]


class Checkpoint:
    """Append-only progress file; each record is flushed and fsynced when it is written."""

    def __init__(
        self, path: Path, records: list[dict[str, Any]], header: dict[str, Any] | None = None
    ) -> None:
        """Use `Checkpoint.start`."""
        self.path = path
        self.records = records
        self._header = header  # written with the first record, so a refused run leaves nothing

    @classmethod
    def start(cls, path: Path, settings: dict[str, Any], resume: bool) -> Checkpoint:
        """A new checkpoint (its file appears with the first record), or (with `resume`) the
        records of the stopped run, whose settings must equal `settings`; CheckpointError
        otherwise."""
        if not resume:
            if path.exists():
                raise CheckpointError(
                    f"a stopped labelling run left {path}: continue it with --resume (and the "
                    "same options), or delete that file to start again"
                )
            return cls(path, [], header={"settings": settings})
        if not path.exists():
            raise CheckpointError(f"nothing to resume: there is no {path}; run without --resume")
        lines = path.read_text(encoding="utf-8").splitlines()
        parsed = []
        for line in lines:
            try:
                parsed.append(json.loads(line))
            except ValueError:
                break  # a line cut short by the stop: the step is done again
        if not parsed or "settings" not in parsed[0]:
            raise CheckpointError(f"{path} is not a labelling checkpoint; delete it")
        differ = _differences(parsed[0]["settings"], settings)
        if differ:
            raise CheckpointError(
                "--resume needs the settings of the stopped run, which had "
                + "; ".join(differ)
                + f". Rerun with those, or delete {path} to start again"
            )
        if len(parsed) < len(lines):  # drop the cut line, so that new records follow whole ones
            tmp = path.with_name(path.name + ".partial")
            tmp.unlink(missing_ok=True)
            cls._write(tmp, parsed)
            os.replace(tmp, path)
        return cls(path, parsed[1:])

    @staticmethod
    def _write(path: Path, records: list[dict[str, Any]]) -> None:
        with open(path, "a", encoding="utf-8") as f:
            f.write("".join(json.dumps(r, allow_nan=True) + "\n" for r in records))
            f.flush()
            os.fsync(f.fileno())

    def append(self, record: dict[str, Any]) -> None:
        header = [self._header] if self._header is not None else []
        self._write(self.path, [*header, record])
        self._header = None
        self.records.append(record)

    def remove(self) -> None:
        self.path.unlink(missing_ok=True)
