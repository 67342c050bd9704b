"""Ray Train decomposition: steps/s and memory per worker for 1 and 2 workers, ddp and fsdp,
and fsdp with the target sharded too (`fsdp-target`, `--shard-target`).

    python benchmarks/train_scaling.py resid-mlp-1 --steps 200 [--runs ddp:1 ddp:2 fsdp:1 fsdp:2]
    python benchmarks/train_scaling.py resid-mlp-2 --steps 100 --runs fsdp:2 fsdp-target:2

Each run is a real `run_job` on one local Ray (started once, so its start-up is reported once).
Per run: the fixed cost of a Ray Train run (worker group start, model build, warm-up) apart from
steps/s, which is measured between the first and last progress records; the bytes each worker
holds for components, gradients and Adam's moments (falls as 1/N under fsdp) and for the frozen
target (falls as 1/N with `fsdp-target`); peak RSS per worker.
"""

from __future__ import annotations

import argparse
import os
import tempfile
import time
from pathlib import Path

import ray
import torch
from jsonl import emit

from services.train.job import JobOptions, run_job
from spd_core.presets import resolve_config
from spd_core.task.toy import toy_task


def measure(preset: str, run: str, workers: int, steps: int, root: Path) -> None:
    strategy, shard_target = ("fsdp", True) if run == "fsdp-target" else (run, False)
    config = resolve_config(preset).model_copy(
        update={
            "steps": steps,
            "train_log_freq": max(1, steps // 10),
            "shard_target": shard_target,
        }
    )
    task = toy_task(config, torch.device("cpu"))
    stamps: list[tuple[float, int]] = []
    start = time.perf_counter()
    metrics = run_job(
        config,
        task,
        root / f"{run}-{workers}.zarr",
        JobOptions(workers=workers, strategy=strategy, checkpoint_every=steps),
        progress=lambda e: stamps.append((time.perf_counter(), e.step)),
    )
    total = time.perf_counter() - start
    (t0, s0), (t1, s1) = stamps[0], stamps[-1]
    rate = (s1 - s0) / (t1 - t0)
    tag = f"{preset}/{run}/{workers}w"
    emit(f"{tag}/steps_per_s", rate, "steps/s")
    emit(f"{tag}/run_fixed_cost", total - steps / rate, "s")
    for key in ("component_state_bytes", "target_bytes", "peak_rss_bytes"):
        emit(f"{tag}/{key}_per_worker", metrics[f"memory/{key}_per_worker"] / 2**20, "MiB")


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("preset", nargs="?", default="resid-mlp-1")
    parser.add_argument("--steps", type=int, default=200)
    parser.add_argument(
        "--runs",
        nargs="+",
        default=["ddp:1", "ddp:2", "fsdp:1", "fsdp:2"],
        help="STRATEGY:WORKERS with STRATEGY ddp, fsdp or fsdp-target (fsdp, target sharded)",
    )
    args = parser.parse_args()
    for key, value in {
        "RAY_AUTH_MODE": "disabled",
        "RAY_USAGE_STATS_ENABLED": "0",
        "RAY_TRAIN_HEALTH_CHECK_INTERVAL_S": "0.1",
    }.items():
        os.environ.setdefault(key, value)
    start = time.perf_counter()
    ray.init(include_dashboard=False, log_to_driver=False)
    emit("ray_init", time.perf_counter() - start, "s")
    with tempfile.TemporaryDirectory() as tmp:
        for spec in args.runs:
            run, workers = spec.split(":")
            measure(args.preset, run, int(workers), args.steps, Path(tmp))
    ray.shutdown()


if __name__ == "__main__":
    main()
