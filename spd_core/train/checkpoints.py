"""Where a run's checkpoints live, the checks that keep a new run from destroying earlier work,
and the checkpoint folders of a run in one process.

An in-process run's checkpoint directory holds `checkpoint_step_<step>` folders with the one
rank's state file; a Ray Train job's holds what Ray writes there (`checkpoint_<date>` folders and
its marker and snapshot files). Each kind resumes only with its own runner.
"""

from __future__ import annotations

import re
import shutil
import tempfile
from pathlib import Path

from spd_core.config import Config, ConfigError
from spd_core.store import FactorStore, StoreError
from spd_core.store.location import Location
from spd_core.train import training_state
from spd_core.train.loop import TrainingState

_LOCAL_PREFIX = "checkpoint_step_"
_LOCAL_NAME = re.compile(rf"{_LOCAL_PREFIX}(\d+)$")
_PARTIAL_SUFFIX = ".partial"  # a folder still being written; never resumed from


def default_checkpoint_every(config: Config) -> int:
    """A tenth of the run, rounded to the log frequency (at least one log interval)."""
    tenth = max(1, config.steps // 10)
    freq = config.train_log_freq
    return max(freq, (tenth // freq) * freq)


def checkpoint_dir_for(
    out: str | Path | Location, checkpoint_dir: str | Path | Location | None
) -> Location:
    """`checkpoint_dir` (--checkpoint-dir, a path or a URL) if given, else `<STORE>.checkpoints`
    beside the store, on the same filesystem (an object store's, for a URL store). A given URL
    is opened with the store's storage options."""
    store = Location.of(out)
    if checkpoint_dir:
        given = Location.of(checkpoint_dir)
        return Location.of(given, store.storage_options) if given.is_url else given
    return store.sibling(".checkpoints")


def check_run_paths(
    out: str | Path | Location,
    ckpt_dir: str | Path | Location,
    config: Config,
    *,
    resume: bool,
    overwrite: bool,
) -> None:
    """Refuse what would lose work: a finished store, an unfinished one without --resume, a
    directory that is not ours as --checkpoint-dir, a resume with another config or without
    checkpoints. What kind of checkpoint a resume needs is the runner's to check."""
    store, ckpt_dir = Location.of(out), Location.of(ckpt_dir)
    if resume:
        if not store.exists():
            raise StoreError(f"--resume: there is no store at {out} to continue")
        if _stored_config(store) != config.model_dump(mode="json"):
            raise ConfigError(
                f"--resume: {out} was started with a different config; resume with the same "
                "preset/config, --steps and --seed"
            )
        if not ckpt_dir.exists():
            raise StoreError(
                f"--resume: no checkpoints at {ckpt_dir}: the run stopped before its first "
                "checkpoint, or they were moved; start it again with --overwrite"
            )
        return
    if ckpt_dir.is_file():
        raise StoreError(
            f"{ckpt_dir} is a file, not a checkpoint directory; choose another "
            "--checkpoint-dir (it is never deleted)"
        )
    found = ckpt_dir.names()
    if found and not _is_checkpoint_dir(found):
        raise StoreError(
            f"{ckpt_dir} exists and is not a checkpoint directory of an spd run; choose another "
            "--checkpoint-dir (it is never deleted)"
        )
    store_exists = store.exists()
    if found and not store_exists and not overwrite:
        raise StoreError(
            f"checkpoints of an earlier run are at {ckpt_dir} but {out} is gone; pass "
            "--overwrite to discard them, or choose another --out"
        )
    if store_exists and not overwrite:
        try:
            FactorStore.open(store)
            state = "a complete factor store"
            hint = "pass --overwrite to replace it, or choose another --out"
        except StoreError:
            state = "an unfinished store (or another file)"
            hint = (
                "pass --resume to continue it, --overwrite to start again, or choose another --out"
            )
        raise StoreError(f"{out} already holds {state}; {hint}")


def _is_checkpoint_dir(names: list[str]) -> bool:
    """Only what spd's runs write there: checkpoint_* folders, and Ray's marker and snapshot
    files (`.validate_storage_marker`, `checkpoint_manager_snapshot.json`)."""
    return all(n.startswith(("checkpoint_", ".validate_storage_marker")) for n in names)


def latest_local_checkpoint(ckpt_dir: str | Path | Location) -> tuple[int, Location] | None:
    """(step, folder) of the fully written in-process checkpoint of the highest step, if any."""
    folder = Location.of(ckpt_dir)
    found = []
    for name in folder.names():
        match = _LOCAL_NAME.match(name)
        if match and folder.child(name).child(training_state.state_file("", 0).name).is_file():
            found.append((int(match.group(1)), folder.child(name)))
    return max(found, key=lambda f: f[0]) if found else None


def save_local_checkpoint(
    state: TrainingState, ckpt_dir: str | Path | Location, keep: int = 2
) -> Location:
    """Write `state` as `checkpoint_step_<step>` (complete or absent, never half-written) and
    delete all but the newest `keep` checkpoints. Locally the folder is written as `.partial`
    and renamed; on an object store the state file is one PUT, which appears whole or not at
    all (a checkpoint counts only once its state file is there)."""
    folder = Location.of(ckpt_dir)
    final = folder.child(f"{_LOCAL_PREFIX}{state.step:09d}")
    if folder.is_url:
        with tempfile.TemporaryDirectory() as tmp:
            written = training_state.save(state, tmp, rank=0, world_size=1)
            fs, _ = folder.filesystem()
            fs.put_file(str(written), final.child(written.name).fs_path)
    else:
        partial = final.path.with_name(final.name + _PARTIAL_SUFFIX)
        shutil.rmtree(partial, ignore_errors=True)
        partial.mkdir(parents=True)
        training_state.save(state, partial, rank=0, world_size=1)
        shutil.rmtree(final.path, ignore_errors=True)
        partial.rename(final.path)
    others = [n for n in folder.names() if n != final.name and n.startswith(_LOCAL_PREFIX)]
    complete = sorted(n for n in others if _LOCAL_NAME.match(n))  # zero-padded: by step
    leftovers = [n for n in others if not _LOCAL_NAME.match(n)]  # partial, from a crash
    for stale in leftovers + complete[: max(0, len(complete) - (keep - 1))]:
        folder.child(stale).remove()
    return final


def restore_local_checkpoint(found: Location, into: Path) -> Path:
    """A local folder holding the state file of the checkpoint `found`: itself when local, else
    `into`, with the file downloaded."""
    if not found.is_url:
        return found.path
    name = training_state.state_file("", 0).name
    fs, _ = found.filesystem()
    fs.get_file(found.child(name).fs_path, str(into / name))
    return into


def _stored_config(store: Location) -> dict:
    found = FactorStore.open(store, allow_incomplete=True)
    if found.complete:
        raise StoreError(f"--resume: {store} is already complete; nothing to continue")
    return found.config
