"""`spd decompose PRESET|CONFIG --out STORE`: a Ray Train job by default, or one process."""

from __future__ import annotations

import argparse
import sys

import torch

from services.commands.store_location import add_storage_options, store_location
from services.train.checkpoints import resume_point
from spd_core.config import Config, ConfigError
from spd_core.hf.packaged import HFModelError
from spd_core.model.component_model import ModuleSelectionError
from spd_core.model.tied_components import TiedComponentsError
from spd_core.presets import preset_names, resolve_config
from spd_core.store import StoreError
from spd_core.store.location import Location
from spd_core.targets.validation import TargetTrainingError
from spd_core.task import make_task
from spd_core.text.corpora import CorpusError
from spd_core.train.checkpoints import checkpoint_dir_for
from spd_core.train.parallel.sharding import STRATEGIES
from spd_core.train.parallel.target_sharding import check_shard_target_strategy
from spd_core.train.progress import ProgressEvent
from spd_core.train.single_process import decompose


def add_parser(sub: argparse._SubParsersAction) -> None:
    p = sub.add_parser(
        "decompose",
        help="decompose a target model (a preset or a YAML config) into a factor store",
        description="Train SPD components for a target and write them to a Zarr factor store. "
        f"Presets: {', '.join(preset_names())}. By default the run is a Ray Train job on an "
        "embedded local Ray (no cluster needed); --address joins a running cluster, --no-ray "
        "runs in this process. The store is marked complete only when the run finishes; a "
        "stopped or failed run continues with --resume from its last checkpoint.",
    )
    p.add_argument("config", metavar="PRESET|CONFIG.yaml", help="preset name or YAML config path")
    p.add_argument(
        "--out",
        required=True,
        metavar="STORE",
        help="path or URL (s3://bucket/run.zarr, gs://…) of the .zarr store to write; every "
        "worker writes its own chunks straight into it",
    )
    p.add_argument("--steps", type=int, help="override the number of optimisation steps")
    p.add_argument("--seed", type=int, help="override the seed (components, masks, data)")
    p.add_argument("--overwrite", action="store_true", help="replace an existing store at --out")
    p.add_argument("--device", default="cpu", help="cpu or cuda (Ray: one GPU per worker)")
    p.add_argument("--threads", type=int, help="torch CPU threads per process")
    p.add_argument("--quiet", action="store_true", help="print only the final summary")
    p.add_argument(
        "--checkpoint-every",
        type=int,
        metavar="N",
        help="steps between checkpoints (default: a tenth of the run); "
        "a stopped or failed run loses at most this much work",
    )
    p.add_argument(
        "--checkpoint-dir",
        metavar="DIR",
        help="where checkpoints go, a path or URL (default STORE.checkpoints, beside the store: "
        "on the same object store for a URL store; a local path on a multi-node cluster must be "
        "shared storage); deleted once the store is complete",
    )
    add_storage_options(p)
    p.add_argument(
        "--resume",
        action="store_true",
        help="continue an unfinished run from its last checkpoint "
        "(same preset/config, --steps, --seed and, for Ray, --workers)",
    )
    ray_opts = p.add_argument_group("Ray Train")
    ray_opts.add_argument("--workers", type=int, default=1, help="training workers (default 1)")
    ray_opts.add_argument(
        "--strategy",
        choices=STRATEGIES,
        default="ddp",
        help="ddp: every worker holds all components, gradients averaged; fsdp: each module's "
        "components and CI function are sharded over the workers (default ddp)",
    )
    ray_opts.add_argument(
        "--shard-target",
        action="store_true",
        help="with --strategy fsdp: shard the frozen target's blocks (layers, embeddings, head) "
        "over the workers too, for a model that does not fit one worker; each block is gathered "
        "for every pass through it (config field shard_target)",
    )
    ray_opts.add_argument(
        "--address",
        help="Ray cluster to join (host:port, ray://host:port or auto; "
        "default $RAY_ADDRESS, else an embedded local Ray)",
    )
    ray_opts.add_argument(
        "--cpus-per-worker", type=float, default=1.0, help="CPUs reserved per worker (default 1)"
    )
    ray_opts.add_argument(
        "--max-failures", type=int, default=3, help="worker failures to recover from (default 3)"
    )
    ray_opts.add_argument("--verbose", action="store_true", help="show Ray's and workers' logs")
    ray_opts.add_argument(
        "--no-ray", action="store_true", help="run in this process without Ray (one worker)"
    )


def _fail(message: str) -> int:
    print(f"spd decompose: error: {message}", file=sys.stderr)
    return 2


def run(args: argparse.Namespace) -> int:
    if args.threads:
        torch.set_num_threads(args.threads)
    try:
        config = resolve_config(args.config)
        updates = {k: getattr(args, k) for k in ("steps", "seed") if getattr(args, k) is not None}
        if updates.get("steps", 1) <= 0:
            return _fail("--steps must be positive")
        if args.shard_target:
            updates["shard_target"] = True
        config = config.model_copy(update=updates)
        if config.shard_target:
            check_shard_target_strategy(None if args.no_ray else args.strategy)
        store = store_location(args.out, args)
        if args.checkpoint_dir:
            store_location(args.checkpoint_dir, args)
        if args.no_ray:
            return _run_here(args, config, store)
        return _run_on_ray(args, config, store)
    except (
        ConfigError,
        ModuleSelectionError,
        StoreError,
        TargetTrainingError,
        HFModelError,
        CorpusError,
        TiedComponentsError,
    ) as err:
        return _fail(str(err))
    except KeyboardInterrupt:
        print(f"\n{interrupted_message(args)}", file=sys.stderr)
        return 130


def interrupted_message(args: argparse.Namespace) -> str:
    """What a stopped run left behind, and the command's way on from there."""
    store = Location.of(args.out, getattr(args, "storage_options", None))
    if not store.exists():
        return f"interrupted before {args.out} was created"
    since = resume_point(checkpoint_dir_for(store, args.checkpoint_dir), local=args.no_ray)
    if since is None:
        return (
            f"interrupted: {args.out} is left incomplete, before its first checkpoint; "
            "start it again with --overwrite"
        )
    return f"interrupted: {args.out} is left incomplete; continue it with --resume (from {since})"


def _run_here(args: argparse.Namespace, config: Config, store: Location) -> int:
    if args.workers != 1:
        return _fail("--no-ray runs one process: --workers needs Ray")
    task = make_task(config, torch.device(args.device))
    verb = "resuming" if args.resume else "decomposing"
    print(f"{verb} {args.config} for {config.steps} steps into {args.out}", flush=True)
    result = decompose(
        config,
        task,
        out=store,
        overwrite=args.overwrite,
        device=args.device,
        progress=None if args.quiet else _print_progress,
        checkpoint_every=args.checkpoint_every,
        checkpoint_dir=args.checkpoint_dir,
        resume=args.resume,
    )
    return _summary(args.out, result.metrics)


def _run_on_ray(args: argparse.Namespace, config: Config, store: Location) -> int:
    from ray.train import TrainingFailedError

    from services.ray_cluster import ClusterError
    from services.train.job import JobOptions, run_job

    options = JobOptions(
        workers=args.workers,
        strategy=args.strategy,
        address=args.address,
        cpus_per_worker=args.cpus_per_worker,
        use_gpu=args.device.startswith("cuda"),
        threads=args.threads,
        checkpoint_every=args.checkpoint_every,
        checkpoint_dir=args.checkpoint_dir,
        max_failures=args.max_failures,
        resume=args.resume,
        overwrite=args.overwrite,
        verbose=args.verbose,
    )
    # shard_target: the driver needs a Hugging Face model's shapes only, never its weights
    task = make_task(config, torch.device("cpu"), target_on_meta=config.shard_target)
    verb = "resuming" if args.resume else "decomposing"
    target = ", target sharded" if config.shard_target else ""
    print(
        f"{verb} {args.config} for {config.steps} steps into {args.out} "
        f"({args.workers} worker{'s' if args.workers > 1 else ''}, {args.strategy}{target}, "
        "Ray Train)",
        flush=True,
    )
    try:
        metrics = run_job(
            config, task, store, options, progress=None if args.quiet else _print_progress
        )
    except ClusterError as err:
        return _fail(str(err))
    except TrainingFailedError as err:  # a worker failed for good: keep store and checkpoints
        return _fail(
            f"the Ray job failed: {err}\n{args.out} is left incomplete; fix the cause and "
            "continue with --resume"
        )
    return _summary(args.out, metrics)


def _summary(out: str, metrics: dict) -> int:
    print(f"done: {out}")
    for key, value in sorted(metrics.items()):
        print(f"  {key:40s} {value:.6g}" if isinstance(value, float) else f"  {key:40s} {value}")
    return 0


def _print_progress(event: ProgressEvent) -> None:
    print(event.line(), flush=True)
