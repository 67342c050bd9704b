"""`decompose()`: a decomposition in this process, for the library, `spd decompose --no-ray` and
the benchmarks alike.

It is the rank code of a Ray Train worker (`spd_core.train.run.run_worker`) with one rank, so the
store, its metrics and the checkpoint state are those of a one-worker Ray job. With checkpoints,
a run that was stopped (Ctrl-C, a killed process, a time limit) continues exactly where its last
checkpoint was (`resume=True`).
"""

from __future__ import annotations

import tempfile
from collections.abc import Callable
from dataclasses import dataclass
from pathlib import Path

import torch

from spd_core.config import Config
from spd_core.model.component_model import ComponentModel
from spd_core.store import StoreError
from spd_core.store.location import Location
from spd_core.task import DecompositionTask
from spd_core.train.checkpoints import (
    check_run_paths,
    checkpoint_dir_for,
    default_checkpoint_every,
    latest_local_checkpoint,
    restore_local_checkpoint,
    save_local_checkpoint,
)
from spd_core.train.loop import LogRecord
from spd_core.train.parallel.target_sharding import check_shard_target_strategy
from spd_core.train.progress import ProgressEvent, RateMeter, progress_event
from spd_core.train.run import WorkerPlan, run_worker
from spd_core.train.setup import build_component_model, create_store


@dataclass
class DecompositionResult:
    """The trained model, its final metrics, and the finished store (None without `out`)."""

    model: ComponentModel
    metrics: dict[str, float]
    store_path: str | Path | None


def decompose(
    config: Config,
    task: DecompositionTask,
    *,
    out: str | Path | Location | None = None,
    overwrite: bool = False,
    device: torch.device | str = "cpu",
    progress: Callable[[ProgressEvent], None] | None = None,
    checkpoint_every: int | None = None,
    checkpoint_dir: str | Path | Location | None = None,
    resume: bool = False,
) -> DecompositionResult:
    """Run SPD in this process.

    With `out`, the store is created first (marked incomplete), training curves are appended as
    it runs, checkpoints go to `checkpoint_dir` (default `<out>.checkpoints`) every
    `checkpoint_every` steps (default a tenth of the run), and the store is marked complete only
    after everything is written; the checkpoints are then deleted. `resume=True` continues an
    unfinished store from its last checkpoint. Without `out` nothing is written.
    """
    if out is None and (resume or checkpoint_dir is not None):
        raise StoreError("resume and checkpoint_dir belong to a store: pass out=...")
    if config.shard_target:
        check_shard_target_strategy(None)
    store = Location.of(out) if out is not None else None
    ckpt_dir = checkpoint_dir_for(store, checkpoint_dir) if store is not None else None
    plan = WorkerPlan(
        config=config,
        store=store,
        strategy="ddp",
        rank=0,
        world_size=1,
        device=torch.device(device),
        checkpoint_every=checkpoint_every or default_checkpoint_every(config),
    )
    meters: list[RateMeter] = []  # started at the first logged step, as a Ray job's relay is

    def on_log(record: LogRecord) -> None:
        if progress is None:
            return
        if not meters:  # no rate yet: the time so far went to building and the warm-up
            meters.append(RateMeter(record.step))
            rate = 0.0
        else:
            rate = meters[0].update(record.step)
        progress(progress_event(record, config.steps, rate))

    found = _prepare(config, task, store, ckpt_dir, resume, overwrite)
    with tempfile.TemporaryDirectory() as tmp:
        result = run_worker(
            plan,
            task,
            resume_from=restore_local_checkpoint(found, Path(tmp)) if found else None,
            save_checkpoint=(lambda state: save_local_checkpoint(state, ckpt_dir))
            if ckpt_dir is not None
            else None,
            on_log=on_log,
        )
    assert result is not None  # rank 0 always has one
    if ckpt_dir is not None:
        ckpt_dir.remove()  # a finished run needs no checkpoints
    return DecompositionResult(result.model, result.metrics, store.where if store else None)


def _prepare(
    config: Config,
    task: DecompositionTask,
    out: Location | None,
    ckpt_dir: Location | None,
    resume: bool,
    overwrite: bool,
) -> Location | None:
    """Check the paths, then create the store or find the checkpoint folder to resume from."""
    if out is None:
        return None
    assert ckpt_dir is not None
    check_run_paths(out, ckpt_dir, config, resume=resume, overwrite=overwrite)
    if resume:
        found = latest_local_checkpoint(ckpt_dir)
        if found is None:
            raise StoreError(
                f"--resume: {ckpt_dir} holds no checkpoint of a --no-ray run; if {out} was "
                "started as a Ray job, resume it without --no-ray"
            )
        return found[1]
    ckpt_dir.remove()  # check_run_paths allowed it: left by an earlier run, if anything
    create_store(out, build_component_model(config, task), config, task, overwrite=overwrite)
    return None
