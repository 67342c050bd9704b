"""Decompose presets and print the paper's quality figures as JSON lines.

    python benchmarks/quality.py tms-5-2 tms-5-2-id --seeds 0 [--device cuda] [--out-dir runs/]
    python benchmarks/quality.py resid-mlp-1 --workers 2 --strategy fsdp   # as a Ray Train job
    python benchmarks/quality.py my-variant.yaml          # a config file instead of a preset
    python benchmarks/quality.py --stores runs/a.zarr     # check finished stores, no training

Each figure is one line {"name", "value", "unit"}; `check/...` lines are 1 when the issue's
criterion holds (TMS: MMCS ≥ 0.999, 0.98 ≤ ML2R ≤ 1.04, identity/dense CI error 0, exactly
n_features linear1 subcomponents ever important, L0(linear1) ≤ n_features·p; ResidualMLP:
identity error 0 on every mlp_in, dense error 0 on every mlp_out).
"""

from __future__ import annotations

import argparse
import json
import tempfile
import time
from pathlib import Path

import torch

from spd_core.decompose import decompose
from spd_core.presets import resolve_config
from spd_core.store import FactorStore
from spd_core.task import toy_task


def emit(name: str, value: float, unit: str = "") -> None:
    print(json.dumps({"name": name, "value": value, "unit": unit}), flush=True)


def checks(metrics: dict[str, float], spec: dict) -> dict[str, bool]:
    """The issue's acceptance criteria for one finished run of a toy target (its spec)."""
    errors = {
        k: v for k, v in metrics.items() if k.startswith(("identity_ci_error/", "dense_ci_error/"))
    }
    out = {f"zero_{k}": v == 0 for k, v in errors.items()}
    if spec["kind"] == "tms":
        n, p = spec["n_features"], spec["feature_probability"]
        out["mmcs>=0.999"] = metrics["mmcs/linear1"] >= 0.999
        out["0.98<=ml2r<=1.04"] = 0.98 <= metrics["ml2r/linear1"] <= 1.04
        out["linear1_alive==n_features"] = metrics["alive/linear1"] == n
        out["l0_linear1<=n*p"] = metrics["l0/linear1"] <= n * p
    return out


def run(preset_or_path: str, seed: int, args: argparse.Namespace) -> bool:
    config = resolve_config(preset_or_path)
    preset = Path(preset_or_path).stem  # a preset's name, or a config file's without its suffix
    update = {"seed": seed, **({"steps": args.steps} if args.steps else {})}
    config = config.model_copy(update=update)
    task = toy_task(config, torch.device(args.device))
    start = time.perf_counter()
    if args.workers:
        metrics = _run_on_ray(config, task, preset, seed, args)
    else:
        out = args.out_dir / f"{preset}-seed{seed}.zarr" if args.out_dir else None
        metrics = decompose(config, task, out=out, overwrite=True, device=args.device).metrics
    elapsed = time.perf_counter() - start
    tag = f"{preset}/seed{seed}" + (f"/{args.strategy}-{args.workers}w" if args.workers else "")
    emit(f"{tag}/wall_time", elapsed, "s")
    emit(f"{tag}/steps_per_s", config.steps / elapsed, "steps/s")
    return report(tag, metrics, task.target_spec["spec"])


def report(tag: str, metrics: dict[str, float], spec: dict) -> bool:
    """Emit a run's metrics and its acceptance checks; True when every check holds."""
    for key, value in sorted(metrics.items()):
        emit(f"{tag}/{key}", float(value))
    crit = checks(metrics, spec)
    for key, ok in crit.items():
        emit(f"{tag}/check/{key}", int(ok), "bool")
    emit(f"{tag}/check/all", int(all(crit.values())), "bool")
    return all(crit.values())


def check_store(path: Path) -> bool:
    """The checks on a finished toy store's stored metrics (e.g. one made by `spd decompose`)."""
    store = FactorStore.open(path)
    if store.target_spec.get("kind") != "toy":
        raise SystemExit(f"{path}: quality checks need a toy target")
    return report(path.stem, store.metrics, store.target_spec["spec"])


def _run_on_ray(config, task, preset: str, seed: int, args: argparse.Namespace) -> dict:
    from services.train.job import JobOptions, run_job

    options = JobOptions(
        workers=args.workers,
        strategy=args.strategy,
        threads=args.threads,
        use_gpu=args.device.startswith("cuda"),
        overwrite=True,
    )
    with tempfile.TemporaryDirectory() as tmp:
        root = args.out_dir or Path(tmp)
        return run_job(config, task, root / f"{preset}-seed{seed}-{args.strategy}.zarr", options)


def main() -> None:
    parser = argparse.ArgumentParser(
        description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter
    )
    parser.add_argument("presets", nargs="*", help="preset names or YAML config paths")
    parser.add_argument("--stores", type=Path, nargs="+", default=[], help="finished stores")
    parser.add_argument("--seeds", type=int, nargs="+", default=[0])
    parser.add_argument("--device", default="cpu")
    parser.add_argument(
        "--steps", type=int, help="override steps (for a quick look, not the figures)"
    )
    parser.add_argument("--threads", type=int, default=1)
    parser.add_argument("--out-dir", type=Path)
    parser.add_argument("--workers", type=int, help="run as a Ray Train job with N workers")
    parser.add_argument("--strategy", choices=["ddp", "fsdp"], default="ddp")
    args = parser.parse_args()
    if not args.presets and not args.stores:
        parser.error("name at least one preset, config file or --stores STORE")
    torch.set_num_threads(args.threads)
    for path in args.stores:
        check_store(path)
    for preset in args.presets:
        passed = [run(preset, s, args) for s in args.seeds]
        emit(f"{Path(preset).stem}/seeds_passing", sum(passed), f"of {len(passed)}")


if __name__ == "__main__":
    main()
