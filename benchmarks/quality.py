"""Decompose presets and print the paper's quality figures as JSON lines.

    python benchmarks/quality.py tms-5-2 tms-5-2-id --seeds 0 [--device cuda] [--out-dir runs/]
    python benchmarks/quality.py resid-mlp-1 --workers 2 --strategy fsdp   # as a Ray Train job
    python benchmarks/quality.py my-variant.yaml          # a config file instead of a preset
    python benchmarks/quality.py --stores runs/a.zarr     # check finished stores, no training
    python benchmarks/quality.py tms-40-10 --steps 3000 --reference-python ref-venv/bin/python

Each figure is one line {"name", "value", "unit"}; `check/...` lines are 1 when the issue's
criterion holds (TMS: MMCS ≥ 0.999, 0.98 ≤ ML2R ≤ 1.04, identity/dense CI error 0, exactly
n_features linear1 subcomponents ever important, L0(linear1) ≤ n_features·p; ResidualMLP:
identity error 0 on every mlp_in, dense error 0 on every mlp_out).

`--reference-python` (toy presets by name) also has the public reference implementation
(goodfire-ai/spd, set up by `benchmarks/setup_reference.sh`) decompose the same trained target with
its own config for the same steps, seed and bf16 autocast, beside ours on the other core
(`benchmarks/reference_quality.py`), and scores its result with this project's metrics and checks
under `.../reference/...`: whether a figure comes from the recipe or from this implementation.
Its alive count and L0 are over as many fresh inputs as ours (`eval.n_eval_batches` batches).
"""

from __future__ import annotations

import argparse
import contextlib
import subprocess
import tempfile
import time
from pathlib import Path

import torch
from jsonl import emit
from speed import has_reference

from spd_core.config import Config
from spd_core.eval.evaluation import pattern_errors
from spd_core.eval.metrics.ground_truth import mmcs_ml2r
from spd_core.presets import resolve_config
from spd_core.store import FactorStore
from spd_core.task.toy import toy_task
from spd_core.train.single_process import decompose

REFERENCE_PRESETS = (
    *("tms-5-2", "tms-5-2-id", "tms-40-10", "tms-40-10-id"),
    *("resid-mlp-1", "resid-mlp-2", "resid-mlp-3"),
)


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
    tag = f"{preset}/seed{seed}" + (f"/{args.strategy}-{args.workers}w" if args.workers else "")
    reference_run = (
        ReferenceRun(args.reference_python, preset, config, task.target, args.threads)
        if args.reference_python
        else contextlib.nullcontext()
    )
    with reference_run as reference:
        start = time.perf_counter()
        if args.workers:
            metrics = _run_on_ray(config, task, preset, seed, args)
        else:
            out = args.out_dir / f"{preset}-seed{seed}.zarr" if args.out_dir else None
            metrics = decompose(config, task, out=out, overwrite=True, device=args.device).metrics
        elapsed = time.perf_counter() - start
        emit(f"{tag}/wall_time", elapsed, "s")
        emit(f"{tag}/steps_per_s", config.steps / elapsed, "steps/s")
        passed = report(tag, metrics, task.target_spec["spec"])
        if reference is not None:
            ref_metrics = reference.metrics(config, task.target)
            report(f"{tag}/reference", ref_metrics, task.target_spec["spec"])
    return passed


class ReferenceRun:
    """The reference implementation decomposing `target` in a subprocess under its own Python
    (`reference_quality.py`), started at once so that it runs beside ours. Leaving the `with`
    block stops it if it still runs (our run raised) and removes its files."""

    def __init__(
        self, python: str, preset: str, config: Config, target: torch.nn.Module, threads: int
    ) -> None:
        self._tmp = tempfile.TemporaryDirectory()
        tmp = Path(self._tmp.name)
        torch.save(target.state_dict(), tmp / "target.pt")
        self._out = tmp / "reference.pt"
        script = Path(__file__).with_name("reference_quality.py")
        command = [python, str(script), preset, "--weights", str(tmp / "target.pt")]
        command += ["--out", str(self._out), "--steps", str(config.steps)]
        command += ["--seed", str(config.seed), "--threads", str(threads)]
        command += ["--eval-batches", str(config.eval.n_eval_batches)]
        command += ["--autocast-bf16", str(int(config.autocast_bf16))]
        self._log = tmp / "reference.log"  # a file, not a pipe: its progress bar fills a pipe
        with self._log.open("w") as log:
            self._process = subprocess.Popen(command, cwd=tmp, stdout=log, stderr=log)

    def metrics(self, config: Config, target: torch.nn.Module) -> dict[str, float]:
        """Wait for the reference, then its figures under this project's metric names."""
        if self._process.wait() != 0:
            raise SystemExit(f"reference_quality.py failed:\n{self._log.read_text()[-3000:]}")
        summary = torch.load(self._out, weights_only=True)
        return reference_figures(summary, config, target)

    def __enter__(self) -> ReferenceRun:
        return self

    def __exit__(self, *exc_info: object) -> None:
        if self._process.poll() is None:
            self._process.kill()
            self._process.wait()
        self._tmp.cleanup()


def reference_figures(
    summary: dict[str, dict], config: Config, target: torch.nn.Module
) -> dict[str, float]:
    """`reference_quality.py`'s per-module summary scored as `evaluate` scores ours."""
    out: dict[str, float] = {}
    for name, module in summary.items():
        out[f"alive/{name}"] = int((module["max_ci"] > config.ci_alive_threshold).sum())
        out[f"l0/{name}"] = float(module["l0"])
    out.update(pattern_errors({n: m["one_hot_ci"] for n, m in summary.items()}, config))
    gt = config.eval.ground_truth_module
    if gt is not None:
        weight = target.get_submodule(gt).weight
        U, V = summary[gt]["U"], summary[gt]["V"]
        out.update({f"{k}/{gt}": v for k, v in mmcs_ml2r(U, V, weight).items()})
    return out


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
    parser.add_argument(
        "--reference-python",
        help="the Python of an environment with the reference implementation "
        "(benchmarks/setup_reference.sh): it decomposes each toy preset's target beside ours",
    )
    args = parser.parse_args()
    if not args.presets and not args.stores:
        parser.error("name at least one preset, config file or --stores STORE")
    others = [p for p in args.presets if p not in REFERENCE_PRESETS]
    if args.reference_python and others:
        parser.error(f"--reference-python takes the toy presets only, not {', '.join(others)}")
    if args.reference_python and not has_reference(args.reference_python):
        parser.error(
            f"{args.reference_python} cannot import the reference implementation (spd.run_spd); "
            "make its environment with benchmarks/setup_reference.sh"
        )
    torch.set_num_threads(args.threads)
    for path in args.stores:
        check_store(path)
    for preset in args.presets:
        passed = [run(preset, s, args) for s in args.seeds]
        emit(f"{Path(preset).stem}/seeds_passing", sum(passed), f"of {len(passed)}")


if __name__ == "__main__":
    main()
