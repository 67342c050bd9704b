"""Decompose presets and print the paper's quality figures as JSON lines.

    python benchmarks/quality.py tms-5-2 tms-5-2-id --seeds 0 [--device cuda] [--out-dir runs/]

Each figure is one line {"name", "value", "unit"}; `check/...` lines are 1 when the issue's
criterion holds (TMS: MMCS ≥ 0.999, 0.98 ≤ ML2R ≤ 1.04, identity/dense CI error 0, exactly
n_features linear1 subcomponents ever important, L0(linear1) ≤ n_features·p; ResidualMLP:
identity error 0 on every mlp_in, dense error 0 on every mlp_out).
"""

from __future__ import annotations

import argparse
import json
import time
from pathlib import Path

import torch

from spd_core.decompose import decompose
from spd_core.presets import resolve_config
from spd_core.task import toy_task


def emit(name: str, value: float, unit: str = "") -> None:
    print(json.dumps({"name": name, "value": value, "unit": unit}), flush=True)


def checks(preset: str, metrics: dict[str, float], spec: dict) -> dict[str, bool]:
    """The issue's acceptance criteria for one finished run."""
    errors = {
        k: v for k, v in metrics.items() if k.startswith(("identity_ci_error/", "dense_ci_error/"))
    }
    out = {f"zero_{k}": v == 0 for k, v in errors.items()}
    if preset.startswith("tms"):
        n, p = spec["n_features"], spec["feature_probability"]
        out["mmcs>=0.999"] = metrics["mmcs/linear1"] >= 0.999
        out["0.98<=ml2r<=1.04"] = 0.98 <= metrics["ml2r/linear1"] <= 1.04
        out["linear1_alive==n_features"] = metrics["alive/linear1"] == n
        out["l0_linear1<=n*p"] = metrics["l0/linear1"] <= n * p
    return out


def run(preset: str, seed: int, device: str, out_dir: Path | None, steps: int | None) -> bool:
    config = resolve_config(preset)
    update = {"seed": seed, **({"steps": steps} if steps else {})}
    config = config.model_copy(update=update)
    task = toy_task(config, torch.device(device))
    out = out_dir / f"{preset}-seed{seed}.zarr" if out_dir else None
    start = time.perf_counter()
    result = decompose(config, task, out=out, overwrite=True, device=device)
    elapsed = time.perf_counter() - start
    tag = f"{preset}/seed{seed}"
    emit(f"{tag}/wall_time", elapsed, "s")
    emit(f"{tag}/steps_per_s", config.steps / elapsed, "steps/s")
    for key, value in sorted(result.metrics.items()):
        emit(f"{tag}/{key}", float(value))
    crit = checks(preset, result.metrics, task.target_spec["spec"])
    for key, ok in crit.items():
        emit(f"{tag}/check/{key}", int(ok), "bool")
    emit(f"{tag}/check/all", int(all(crit.values())), "bool")
    return all(crit.values())


def main() -> None:
    parser = argparse.ArgumentParser(
        description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter
    )
    parser.add_argument("presets", nargs="+")
    parser.add_argument("--seeds", type=int, nargs="+", default=[0])
    parser.add_argument("--device", default="cpu")
    parser.add_argument(
        "--steps", type=int, help="override steps (for a quick look, not the figures)"
    )
    parser.add_argument("--threads", type=int, default=1)
    parser.add_argument("--out-dir", type=Path)
    args = parser.parse_args()
    torch.set_num_threads(args.threads)
    for preset in args.presets:
        passed = [run(preset, s, args.device, args.out_dir, args.steps) for s in args.seeds]
        emit(f"{preset}/seeds_passing", sum(passed), f"of {len(passed)}")


if __name__ == "__main__":
    main()
