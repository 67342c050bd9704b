"""What each Ray Train worker runs: rebuild the task, then `spd_core.train.run.run_worker`."""

from __future__ import annotations

import tempfile
from dataclasses import asdict
from pathlib import Path
from typing import Any

import ray.train
import ray.train.torch
import torch

from spd_core.config import config_from_dict
from spd_core.task import make_task
from spd_core.task.toy import toy_task_from_state
from spd_core.train import training_state
from spd_core.train.loop import LogRecord, TrainingState
from spd_core.train.run import WorkerPlan, run_worker


def train_loop_per_worker(job: dict[str, Any]) -> None:
    """`job` is built by `services.train.job`: config, target, store path, strategy, cadence."""
    ctx = ray.train.get_context()
    rank, world = ctx.get_world_rank(), ctx.get_world_size()
    torch.set_num_threads(job["threads"])
    device = ray.train.torch.get_device()
    config = config_from_dict(job["config"], source="the job's config")
    # shard_target: the target's parameters stay on the meta device; each worker reads its rows
    on_meta = config.shard_target
    if job["target_state"] is not None:  # a toy target: exactly the weights the driver trained
        task = toy_task_from_state(job["target_spec"], job["target_state"], device, on_meta)
    else:  # a pretrained model: every worker loads it from the same local files
        task = make_task(config, device, target_on_meta=on_meta)
    plan = WorkerPlan(
        config=config,
        store=job["store"],
        strategy=job["strategy"],
        rank=rank,
        world_size=world,
        device=device,
        checkpoint_every=job["checkpoint_every"],
    )
    progress = job.get("progress")

    def save_checkpoint(state: TrainingState) -> None:
        with tempfile.TemporaryDirectory() as tmp:
            training_state.save(state, tmp, rank, world)
            ray.train.report(
                {"step": state.step, "restarts": state.restarts},
                checkpoint=ray.train.Checkpoint.from_directory(tmp),
            )

    def on_log(record: LogRecord) -> None:
        if progress is not None:
            progress.put_nowait(asdict(record))

    checkpoint = ray.train.get_checkpoint()
    if checkpoint is None:
        run_worker(plan, task, save_checkpoint=save_checkpoint, on_log=on_log)
        return
    with checkpoint.as_directory() as directory:
        run_worker(
            plan, task, resume_from=Path(directory), save_checkpoint=save_checkpoint, on_log=on_log
        )
