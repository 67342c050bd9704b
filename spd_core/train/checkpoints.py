"""Where a run's checkpoints live, the checks that keep a new run from destroying earlier work,
and the checkpoint folders of a run in one process.

An in-process run's checkpoint directory holds `checkpoint_step_<step>` folders with the one
rank's state file; a Ray Train job's holds what Ray writes there (`checkpoint_<date>` folders and
its marker and snapshot files). Each kind resumes only with its own runner.
"""

from __future__ import annotations

import re
import shutil
from pathlib import Path

from spd_core.config import Config, ConfigError
from spd_core.store import FactorStore, StoreError
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


def checkpoint_dir_for(out: str | Path, checkpoint_dir: str | Path | None) -> Path:
    """`checkpoint_dir` (--checkpoint-dir) if given, else `<STORE>.checkpoints`."""
    if checkpoint_dir:
        return Path(checkpoint_dir).absolute()
    return Path(f"{Path(out).absolute()}.checkpoints")


def check_run_paths(
    out: str | Path, ckpt_dir: Path, config: Config, *, resume: bool, overwrite: bool
) -> None:
    """Refuse what would lose work: a finished store, an unfinished one without --resume, a
    directory that is not ours as --checkpoint-dir, a resume with another config or without
    checkpoints. What kind of checkpoint a resume needs is the runner's to check."""
    path = Path(out)
    if resume:
        if not path.exists():
            raise StoreError(f"--resume: there is no store at {out} to continue")
        if _stored_config(path) != config.model_dump(mode="json"):
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
    if ckpt_dir.exists() and not _is_checkpoint_dir(ckpt_dir):
        raise StoreError(
            f"{ckpt_dir} exists and is not a checkpoint directory of an spd run; choose another "
            "--checkpoint-dir (it is never deleted)"
        )
    if ckpt_dir.exists() and not path.exists() and not overwrite:
        raise StoreError(
            f"checkpoints of an earlier run are at {ckpt_dir} but {out} is gone; pass "
            "--overwrite to discard them, or choose another --out"
        )
    if path.exists() and not overwrite:
        try:
            FactorStore.open(path)
            state = "a complete factor store"
            hint = "pass --overwrite to replace it, or choose another --out"
        except StoreError:
            state = "an unfinished store (or another file)"
            hint = (
                "pass --resume to continue it, --overwrite to start again, or choose another --out"
            )
        raise StoreError(f"{out} already holds {state}; {hint}")


def _is_checkpoint_dir(path: Path) -> bool:
    """Only what spd's runs write there: checkpoint_* folders, and Ray's marker and snapshot
    files (`.validate_storage_marker`, `checkpoint_manager_snapshot.json`)."""
    if not path.is_dir():
        return False
    return all(
        p.name.startswith(("checkpoint_", ".validate_storage_marker")) for p in path.iterdir()
    )


def latest_local_checkpoint(ckpt_dir: Path) -> tuple[int, Path] | None:
    """(step, folder) of the fully written in-process checkpoint of the highest step, if any."""
    found = []
    for p in ckpt_dir.iterdir() if ckpt_dir.is_dir() else []:
        match = _LOCAL_NAME.match(p.name)
        if match and training_state.state_file(p, 0).exists():
            found.append((int(match.group(1)), p))
    return max(found) if found else None


def save_local_checkpoint(state: TrainingState, ckpt_dir: Path, keep: int = 2) -> Path:
    """Write `state` as `checkpoint_step_<step>` (complete or absent, never half-written) and
    delete all but the newest `keep` checkpoints."""
    final = ckpt_dir / f"{_LOCAL_PREFIX}{state.step:09d}"
    partial = final.with_name(final.name + _PARTIAL_SUFFIX)
    shutil.rmtree(partial, ignore_errors=True)
    partial.mkdir(parents=True)
    training_state.save(state, partial, rank=0, world_size=1)
    shutil.rmtree(final, ignore_errors=True)
    partial.rename(final)
    others = [p for p in ckpt_dir.iterdir() if p != final and p.name.startswith(_LOCAL_PREFIX)]
    complete = sorted(p for p in others if _LOCAL_NAME.match(p.name))  # zero-padded: by step
    leftovers = [p for p in others if not _LOCAL_NAME.match(p.name)]  # partial, from a crash
    for stale in leftovers + complete[: max(0, len(complete) - (keep - 1))]:
        shutil.rmtree(stale)
    return final


def _stored_config(path: Path) -> dict:
    store = FactorStore.open(path, allow_incomplete=True)
    if store.complete:
        raise StoreError(f"--resume: {path} is already complete; nothing to continue")
    return store.config
