"""The checks of a Ray Train job's checkpoints: a job resumes only from checkpoints Ray's
controller has registered, and never from those of a run in one process (`--no-ray`)."""

from __future__ import annotations

from pathlib import Path

from spd_core.config import Config
from spd_core.store import StoreError
from spd_core.store.location import Location
from spd_core.train.checkpoints import check_run_paths, latest_local_checkpoint

# Ray Train's controller writes this file into the run's folder each time it registers a
# checkpoint; a resumed job starts from the checkpoints it lists, and from step 0 without it
# (Ray's CHECKPOINT_MANAGER_SNAPSHOT_FILENAME, pinned by a test).
RAY_SNAPSHOT_NAME = "checkpoint_manager_snapshot.json"


def check_job_paths(
    out: str | Path | Location,
    ckpt_dir: str | Path | Location,
    config: Config,
    *,
    resume: bool,
    overwrite: bool,
) -> None:
    """`check_run_paths`, and a resume needs a checkpoint that Ray registered."""
    check_run_paths(out, ckpt_dir, config, resume=resume, overwrite=overwrite)
    if not resume:
        return
    if latest_local_checkpoint(ckpt_dir) is not None:
        raise StoreError(
            f"--resume: {out} was started with --no-ray (its checkpoints are at {ckpt_dir}); "
            "resume it with --no-ray"
        )
    if not ray_checkpoint_registered(ckpt_dir):
        raise StoreError(
            f"--resume: Ray registered no checkpoint in {ckpt_dir}: the run stopped before "
            "its first checkpoint; start it again with --overwrite"
        )


def ray_checkpoint_registered(ckpt_dir: str | Path | Location) -> bool:
    """Whether a Ray Train job with its checkpoints in `ckpt_dir` has one to resume from: a
    checkpoint a worker saved is resumed only once Ray's controller has registered it."""
    return Location.of(ckpt_dir).child(RAY_SNAPSHOT_NAME).is_file()


def resume_point(ckpt_dir: Location, local: bool) -> str | None:
    """Where `--resume` would continue from: "step N" for a run in this process, "its last
    checkpoint" for a Ray job (Ray's folder names carry no step); None when nothing is saved."""
    if local:
        found = latest_local_checkpoint(ckpt_dir)
        return f"step {found[0]}" if found else None
    return "its last checkpoint" if ray_checkpoint_registered(ckpt_dir) else None
