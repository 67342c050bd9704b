"""A decomposition in this process (`spd decompose --no-ray`), with checkpoints and `--resume`.

The same rank code as a Ray Train worker (`spd_core.parallel.run_worker`) with one rank: the
store, its metrics and the checkpoint state are those of a one-worker Ray job, and a run that was
stopped (Ctrl-C, a killed process, a time limit) continues exactly where its last checkpoint was.
"""

from __future__ import annotations

import shutil
from collections.abc import Callable
from dataclasses import dataclass
from pathlib import Path

import torch

from services.train.checkpoints import (
    check_paths,
    checkpoint_dir_for,
    default_checkpoint_every,
    latest_local_checkpoint,
    save_local_checkpoint,
)
from spd_core.config import Config
from spd_core.decompose import build_component_model, create_store
from spd_core.parallel.worker import WorkerPlan, run_worker
from spd_core.progress import ProgressEvent, RateMeter, progress_event
from spd_core.store import FactorStore
from spd_core.task import DecompositionTask
from spd_core.training_loop import LogRecord


@dataclass
class LocalOptions:
    """Device, checkpoint cadence and place, and what to do with an existing store."""

    device: str = "cpu"
    checkpoint_every: int | None = None
    checkpoint_dir: str | None = None
    resume: bool = False
    overwrite: bool = False


def run_local(
    config: Config,
    task: DecompositionTask,
    out: str | Path,
    options: LocalOptions,
    progress: Callable[[ProgressEvent], None] | None = None,
) -> dict[str, float]:
    """Decompose in this process into `out`; returns the metrics stored in the finished store."""
    ckpt_dir = checkpoint_dir_for(out, options.checkpoint_dir)
    check_paths(
        out, ckpt_dir, config, resume=options.resume, overwrite=options.overwrite, local=True
    )
    start_step, resume_from = 0, None
    if options.resume:
        found = latest_local_checkpoint(ckpt_dir)
        assert found is not None  # check_paths refuses a resume without one
        start_step, resume_from = found
    else:
        if ckpt_dir.exists():  # check_paths allowed it: left by an earlier run
            shutil.rmtree(ckpt_dir)
        model = build_component_model(config, task)
        create_store(out, model, config, task, overwrite=options.overwrite)
    plan = WorkerPlan(
        config=config,
        store=out,
        strategy="ddp",
        rank=0,
        world_size=1,
        device=torch.device(options.device),
        checkpoint_every=options.checkpoint_every or default_checkpoint_every(config),
    )
    meter = RateMeter(start_step)

    def on_log(record: LogRecord) -> None:
        if progress is not None:
            progress(progress_event(record, config.steps, meter.update(record.step)))

    run_worker(
        plan,
        task,
        resume_from=resume_from,
        save_checkpoint=lambda state: save_local_checkpoint(state, ckpt_dir),
        on_log=on_log,
    )
    metrics = dict(FactorStore.open(out).metrics)  # complete, or this raises
    shutil.rmtree(ckpt_dir, ignore_errors=True)  # a finished run needs no checkpoints
    return metrics
