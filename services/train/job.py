"""The driver of a distributed decomposition: store, checkpoints, TorchTrainer, progress."""

from __future__ import annotations

import posixpath
from collections.abc import Callable
from dataclasses import dataclass
from pathlib import Path
from typing import Any

import pyarrow.fs
import ray
from ray.train import CheckpointConfig, FailureConfig, RunConfig, ScalingConfig
from ray.train.torch import TorchConfig, TorchTrainer

from services.ray_cluster import check_capacity, connect
from services.train.checkpoints import check_job_paths
from services.train.progress_relay import ProgressRelay
from services.train.worker_entry import train_loop_per_worker
from spd_core.config import Config, ConfigError
from spd_core.store import FactorStore
from spd_core.store.location import Location
from spd_core.store.portable import portable
from spd_core.task import DecompositionTask
from spd_core.train.checkpoints import checkpoint_dir_for, default_checkpoint_every
from spd_core.train.loop import local_batch_size
from spd_core.train.parallel.sharding import Strategy, check_fsdp_supports, rows_per_shard
from spd_core.train.parallel.target_sharding import check_target_sharding
from spd_core.train.progress import ProgressEvent
from spd_core.train.setup import build_component_model, create_store


@dataclass
class JobOptions:
    """How to run: workers, strategy, where Ray is, checkpoints and failures."""

    workers: int = 1
    strategy: Strategy = "ddp"
    address: str | None = None
    cpus_per_worker: float = 1.0
    use_gpu: bool = False
    threads: int | None = None
    checkpoint_every: int | None = None
    checkpoint_dir: str | None = None
    max_failures: int = 3
    resume: bool = False
    overwrite: bool = False
    verbose: bool = False


def run_job(
    config: Config,
    task: DecompositionTask,
    out: str | Path | Location,
    options: JobOptions,
    progress: Callable[[ProgressEvent], None] | None = None,
) -> dict[str, float]:
    """Decompose on a Ray Train worker group; returns the metrics stored in the finished store."""
    if options.workers < 1:
        raise ConfigError(f"--workers must be at least 1, got {options.workers}")
    local_batch_size(config, options.workers)
    if options.strategy == "fsdp":
        check_fsdp_supports(config)
    if config.shard_target:
        check_target_sharding(task.target, options.strategy, options.workers)
    store = Location.of(out)
    ckpt_dir = checkpoint_dir_for(store, options.checkpoint_dir)
    check_job_paths(store, ckpt_dir, config, resume=options.resume, overwrite=options.overwrite)
    started = connect(options.address, verbose=options.verbose)
    try:
        check_capacity(options.workers, options.cpus_per_worker, options.use_gpu)
        if not options.resume:
            ckpt_dir.remove()  # check_job_paths allowed it: left by an earlier run, if any
            _create_store(store, config, task, options)
        job = {
            "config": config.model_dump(mode="json"),
            "target_spec": task.target_spec,
            "target_state": task.target_state,
            "store": portable(store),  # opened by every worker, as this process opens it
            "strategy": options.strategy,
            "threads": options.threads or max(1, int(options.cpus_per_worker)),
            "checkpoint_every": options.checkpoint_every or default_checkpoint_every(config),
        }
        with ProgressRelay(config.steps, progress) as relay:
            job["progress"] = relay.queue
            trainer = TorchTrainer(
                train_loop_per_worker,
                train_loop_config=job,
                torch_config=TorchConfig(backend="nccl" if options.use_gpu else "gloo"),
                scaling_config=ScalingConfig(
                    num_workers=options.workers,
                    use_gpu=options.use_gpu,
                    resources_per_worker={"CPU": options.cpus_per_worker},
                ),
                run_config=RunConfig(
                    **ray_storage(portable(ckpt_dir)),
                    failure_config=FailureConfig(max_failures=options.max_failures),
                    checkpoint_config=CheckpointConfig(num_to_keep=2),
                ),
            )
            trainer.fit()
    finally:
        if started:
            ray.shutdown()
    metrics = dict(FactorStore.open(store).metrics)  # complete, or this raises
    ckpt_dir.remove()  # a finished run needs no checkpoints
    return metrics


def ray_storage(ckpt_dir: Location) -> dict[str, Any]:
    """RunConfig's `name`, `storage_path` and, for a URL, `storage_filesystem`: Ray Train keeps
    the run's checkpoints in `ckpt_dir` itself, on an object store through the same fsspec
    filesystem (and storage options) as the store."""
    if not ckpt_dir.is_url:
        return {"name": ckpt_dir.name, "storage_path": str(ckpt_dir.parent)}
    fs, path = ckpt_dir.filesystem()
    return {
        "name": ckpt_dir.name,
        "storage_path": posixpath.dirname(path),
        "storage_filesystem": pyarrow.fs.PyFileSystem(pyarrow.fs.FSSpecHandler(fs)),
    }


def _create_store(
    out: Location, config: Config, task: DecompositionTask, options: JobOptions
) -> None:
    """The empty store, chunked so that each worker's rows are whole chunks."""
    model = build_component_model(config, task)
    chunks = {name: rows_per_shard(C, options.workers) for name, C in model.C.items()}
    create_store(out, model, config, task, overwrite=options.overwrite, chunk_c=chunks)
