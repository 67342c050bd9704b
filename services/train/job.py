"""The driver of a distributed decomposition: store, checkpoints, TorchTrainer, progress."""

from __future__ import annotations

import shutil
from collections.abc import Callable
from dataclasses import dataclass
from pathlib import Path

import ray
from ray.train import CheckpointConfig, FailureConfig, RunConfig, ScalingConfig
from ray.train.torch import TorchConfig, TorchTrainer

from services.ray_cluster import check_capacity, connect
from services.train.progress_relay import ProgressRelay
from services.train.worker_entry import train_loop_per_worker
from spd_core.config import Config, ConfigError
from spd_core.decompose import build_component_model, create_store
from spd_core.parallel.sharding import Strategy, rows_per_shard
from spd_core.progress import ProgressEvent
from spd_core.store import FactorStore, StoreError
from spd_core.task import DecompositionTask
from spd_core.training_loop import local_batch_size


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


def default_checkpoint_every(config: Config) -> int:
    """A tenth of the run, rounded to the log frequency (at least one log interval)."""
    tenth = max(1, config.steps // 10)
    freq = config.train_log_freq
    return max(freq, (tenth // freq) * freq)


def checkpoint_dir_for(out: str | Path, options: JobOptions) -> Path:
    """Where Ray Train keeps the run's checkpoints: --checkpoint-dir or `<STORE>.checkpoints`."""
    if options.checkpoint_dir:
        return Path(options.checkpoint_dir).absolute()
    return Path(f"{Path(out).absolute()}.checkpoints")


def run_job(
    config: Config,
    task: DecompositionTask,
    out: str | Path,
    options: JobOptions,
    progress: Callable[[ProgressEvent], None] | None = None,
) -> dict[str, float]:
    """Decompose on a Ray Train worker group; returns the metrics stored in the finished store."""
    if options.workers < 1:
        raise ConfigError(f"--workers must be at least 1, got {options.workers}")
    local_batch_size(config, options.workers)
    if options.strategy == "fsdp" and config.tied_components:
        raise ConfigError(
            "--strategy fsdp shards each module's factors on its own, which would untie "
            f"tied_components {config.tied_components}; use --strategy ddp, or drop the ties"
        )
    ckpt_dir = checkpoint_dir_for(out, options)
    _check_paths(out, ckpt_dir, config, options)
    started = connect(options.address, verbose=options.verbose)
    try:
        check_capacity(options.workers, options.cpus_per_worker, options.use_gpu)
        if not options.resume:
            if ckpt_dir.exists():  # _check_paths allowed it: left by an earlier run
                shutil.rmtree(ckpt_dir)
            _create_store(out, config, task, options)
        job = {
            "config": config.model_dump(mode="json"),
            "target_spec": task.target_spec,
            "target_state": task.target_state,
            "store": str(Path(out).absolute()),
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
                    name=ckpt_dir.name,
                    storage_path=str(ckpt_dir.parent),
                    failure_config=FailureConfig(max_failures=options.max_failures),
                    checkpoint_config=CheckpointConfig(num_to_keep=2),
                ),
            )
            trainer.fit()
    finally:
        if started:
            ray.shutdown()
    metrics = dict(FactorStore.open(out).metrics)  # complete, or this raises
    shutil.rmtree(ckpt_dir, ignore_errors=True)  # a finished run needs no checkpoints
    return metrics


def _create_store(
    out: str | Path, config: Config, task: DecompositionTask, options: JobOptions
) -> None:
    """The empty store, chunked so that each worker's rows are whole chunks."""
    model = build_component_model(config, task)
    chunks = {name: rows_per_shard(C, options.workers) for name, C in model.C.items()}
    create_store(out, model, config, task, overwrite=options.overwrite, chunk_c=chunks)


def _check_paths(out: str | Path, ckpt_dir: Path, config: Config, options: JobOptions) -> None:
    """Refuse what would lose work: a finished store, an unfinished one without --resume."""
    path = Path(out)
    if options.resume:
        if not path.exists():
            raise StoreError(f"--resume: there is no store at {out} to continue")
        store_config = _stored_config(path)
        if store_config != config.model_dump(mode="json"):
            raise ConfigError(
                f"--resume: {out} was started with a different config; resume with the same "
                "preset/config, --steps and --seed"
            )
        if not ckpt_dir.exists():
            raise StoreError(f"--resume: no checkpoints at {ckpt_dir}; was {out} started with Ray?")
        return
    if ckpt_dir.exists() and not _is_checkpoint_dir(ckpt_dir):
        raise StoreError(
            f"{ckpt_dir} exists and is not a checkpoint directory of an spd run; choose another "
            "--checkpoint-dir (it is never deleted)"
        )
    if ckpt_dir.exists() and not path.exists() and not options.overwrite:
        raise StoreError(
            f"checkpoints of an earlier run are at {ckpt_dir} but {out} is gone; pass "
            "--overwrite to discard them, or choose another --out"
        )
    if path.exists() and not options.overwrite:
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
    """Only what Ray Train writes for a run: checkpoint_* folders and its marker/snapshot files."""
    if not path.is_dir():
        return False
    return all(
        p.name.startswith(("checkpoint_", ".validate_storage_marker")) for p in path.iterdir()
    )


def _stored_config(path: Path) -> dict:
    store = FactorStore.open(path, allow_incomplete=True)
    if store.complete:
        raise StoreError(f"--resume: {path} is already complete; nothing to continue")
    return store.config
