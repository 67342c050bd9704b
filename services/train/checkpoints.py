"""Where a run's checkpoints live, the checks that keep a new run from destroying earlier work,
and the checkpoint folders of a run in this process (`--no-ray`).

A Ray Train job's checkpoint directory holds what Ray writes (`checkpoint_<date>` folders and its
snapshot files); an in-process run's holds `checkpoint_step_<step>` folders with the one rank's
state file. Each kind resumes only with its own runner, and says so when asked to cross over.
"""

from __future__ import annotations

import re
import shutil
from pathlib import Path

from spd_core.config import Config, ConfigError
from spd_core.parallel import training_state
from spd_core.store import FactorStore, StoreError
from spd_core.training_loop import TrainingState

_LOCAL_PREFIX = "checkpoint_step_"
_LOCAL_NAME = re.compile(rf"{_LOCAL_PREFIX}(\d+)$")
_PARTIAL_SUFFIX = ".partial"  # a folder still being written; never resumed from
# Ray Train's controller writes this file into the run's folder each time it registers a
# checkpoint; a resumed job starts from the checkpoints it lists, and from step 0 without it
# (Ray's CHECKPOINT_MANAGER_SNAPSHOT_FILENAME, pinned by a test).
RAY_SNAPSHOT_NAME = "checkpoint_manager_snapshot.json"


def default_checkpoint_every(config: Config) -> int:
    """A tenth of the run, rounded to the log frequency (at least one log interval)."""
    tenth = max(1, config.steps // 10)
    freq = config.train_log_freq
    return max(freq, (tenth // freq) * freq)


def checkpoint_dir_for(out: str | Path, checkpoint_dir: str | None) -> Path:
    """`checkpoint_dir` (--checkpoint-dir) if given, else `<STORE>.checkpoints`."""
    if checkpoint_dir:
        return Path(checkpoint_dir).absolute()
    return Path(f"{Path(out).absolute()}.checkpoints")


def check_paths(
    out: str | Path, ckpt_dir: Path, config: Config, *, resume: bool, overwrite: bool, local: bool
) -> None:
    """Refuse what would lose work: a finished store, an unfinished one without --resume, a
    directory that is not ours as --checkpoint-dir. `local`: the run is in this process."""
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
        has_local = latest_local_checkpoint(ckpt_dir) is not None
        if local and not has_local:
            raise StoreError(
                f"--resume: {ckpt_dir} holds no checkpoint of a --no-ray run; if {out} was started "
                "as a Ray job, resume it without --no-ray"
            )
        if not local and has_local:
            raise StoreError(
                f"--resume: {out} was started with --no-ray (its checkpoints are at {ckpt_dir}); "
                "resume it with --no-ray"
            )
        if not local and not ray_checkpoint_registered(ckpt_dir):
            raise StoreError(
                f"--resume: Ray registered no checkpoint in {ckpt_dir}: the run stopped before "
                "its first checkpoint; start it again with --overwrite"
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
    """Only what spd's runs write there: checkpoint_* folders and Ray's marker/snapshot files."""
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


def ray_checkpoint_registered(ckpt_dir: Path) -> bool:
    """Whether a Ray Train job with its checkpoints in `ckpt_dir` has one to resume from: a
    checkpoint a worker saved is resumed only once Ray's controller has registered it."""
    return (ckpt_dir / RAY_SNAPSHOT_NAME).is_file()


def resume_point(ckpt_dir: Path, local: bool) -> str | None:
    """Where `--resume` would continue from: "step N" for a run in this process, "its last
    checkpoint" for a Ray job (Ray's folder names carry no step); None when nothing is saved."""
    if local:
        found = latest_local_checkpoint(ckpt_dir)
        return f"step {found[0]}" if found else None
    return "its last checkpoint" if ray_checkpoint_registered(ckpt_dir) else None


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
