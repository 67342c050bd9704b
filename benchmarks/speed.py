"""Steps/s of SPD on the presets next to a bare forward+backward of the target (the floor).

    python benchmarks/speed.py tms-5-2-id resid-mlp-1 tms-40-10-id [--threads 1] [--steps 30]
    python benchmarks/speed.py tms-40-10-id --ci-fn-kernels both   # eager vs compiled CI fns
    python benchmarks/speed.py tms-5-2-id --reference-python ref-venv/bin/python

A step is what the training loop does: batch, clean pass, CI, every loss, backward, Adam.
The floor is the target's own forward+backward at the same batch. Steps and floor passes are
timed in alternating rounds and the medians reported, as this CPU's speed drifts by tens of
percent within minutes; a ratio is the median of the rounds' ratios.

`--reference-python` also times the public reference implementation (goodfire-ai/spd) on the
same target, in the same run (`benchmarks/reference_step.py`, set up by
`benchmarks/setup_reference.sh`), and prints `speedup_vs_reference`. Without it, the ratio is to
the reference's figures that issue #2 measured on this machine's CPU with one thread on another
day (`speedup_vs_issue_figure`); this CPU's speed varies by tens of percent from day to day.
"""

from __future__ import annotations

import argparse
import copy
import json
import statistics
import subprocess
import tempfile
import time
from collections.abc import Callable
from dataclasses import dataclass
from pathlib import Path

import torch
from jsonl import emit

from spd_core.losses.persistent_pgd import PersistentPGDRun, ascend_after_backward
from spd_core.presets import resolve_config
from spd_core.task.toy import toy_task
from spd_core.train.seeding import generator
from spd_core.train.setup import build_component_model
from spd_core.train.step import make_optimizer, step_loss

ISSUE_REFERENCE_STEPS_PER_S = {"tms-5-2-id": 20.6, "resid-mlp-1": 3.3, "tms-40-10-id": 0.75}


def time_per_call(fn, n: int, warmup: int = 3) -> float:
    """Mean seconds per call; on a GPU the queued kernels are waited for before each clock read."""
    sync = torch.cuda.synchronize if torch.cuda.is_available() else (lambda: None)
    for _ in range(warmup):
        fn()
    sync()
    start = time.perf_counter()
    for _ in range(n):
        fn()
    sync()
    return (time.perf_counter() - start) / n


def alternating(fns: list[Callable[[], None]], calls: list[int], rounds: int) -> list[list[float]]:
    """Seconds per call of each of `fns` (`calls` calls each) in each of `rounds` rounds, the fns
    taking turns within a round: this CPU's speed drifts by tens of percent within minutes, and
    turns make the drift hit every fn alike. Each fn is warmed up first (any compilation)."""
    for fn in fns:
        for _ in range(3):
            fn()
    pairs = list(zip(fns, calls, strict=True))
    return [[time_per_call(fn, k, warmup=0) for fn, k in pairs] for _ in range(rounds)]


def make_steps(
    preset: str, device: str, compile_ci_fn: bool | None = None
) -> tuple[Callable[[], None], Callable[[], None]]:
    """(spd_step, floor_step) for `preset` as shipped, or with `compile_ci_fn` forced on or off.

    spd_step is what the training loop does: batch, clean pass, CI, every loss, backward, Adam;
    floor_step the target's own forward+backward at the same batch."""
    config = resolve_config(preset)
    if compile_ci_fn is not None:
        config = config.model_copy(update={"compile_ci_fn": compile_ci_fn})
    dev = torch.device(device)
    task = toy_task(config, dev)
    model = build_component_model(config, task).to(dev)
    opt = make_optimizer(model, config.lr_schedule.start_val)
    data_gen, mask_gen = generator(0, "data", dev), generator(0, "masks", dev)
    counter = iter(range(10**9))
    adversaries: dict = {}  # persistent-PGD sources, kept across steps as in training

    def spd_step() -> None:
        opt.zero_grad(set_to_none=True)
        batch = task.batch_fn(config.batch_size, data_gen)
        run = PersistentPGDRun(adversaries, next(counter) % config.steps)
        step_loss(model, batch, run.step, config, mask_gen, persistent=run).total.backward()
        ascend_after_backward(run, config)
        opt.step()

    x = task.batch_fn(config.batch_size, data_gen).requires_grad_(True)
    target = copy.deepcopy(task.target).requires_grad_(True)  # the SPD step's stays frozen

    def floor_step() -> None:
        target(x).sum().backward()

    return spd_step, floor_step


@dataclass
class Timed:
    name: str  # the preset, with [eager] or [compiled] where the CI kernels were forced
    step: Callable[[], None]
    step_s: float  # median over the rounds


ROUNDS = 5


def measure(preset: str, n: int, device: str, variants: tuple[bool | None, ...]) -> list[Timed]:
    """Time `preset` with each of `variants` (compile_ci_fn as shipped, or forced off or on) and
    the floor: `n` steps of each and as many floor passes (at least 20), in alternating rounds,
    so that an A/B of the variants is as fair as the floor ratio; medians over the rounds."""
    names, steps = [], []
    for compiled in variants:
        spd_step, floor_step = make_steps(preset, device, compiled)
        names.append(
            preset if compiled is None else f"{preset}[{'compiled' if compiled else 'eager'}]"
        )
        steps.append(spd_step)
    per_round = max(n // ROUNDS, 1)
    rounds = alternating(
        [*steps, floor_step], [per_round] * len(steps) + [max(per_round, 4)], ROUNDS
    )
    floor_s = statistics.median(r[-1] for r in rounds)
    timed = []
    for i, (name, spd_step) in enumerate(zip(names, steps, strict=True)):
        step_s = statistics.median(r[i] for r in rounds)
        emit(f"{name}/step_time", step_s * 1000, "ms")
        emit(f"{name}/steps_per_s", 1 / step_s, "steps/s")
        emit(f"{name}/floor_time", floor_s * 1000, "ms")
        emit(f"{name}/step_over_floor", statistics.median(r[i] / r[-1] for r in rounds), "x")
        if preset in ISSUE_REFERENCE_STEPS_PER_S:
            per_s = ISSUE_REFERENCE_STEPS_PER_S[preset]
            emit(f"{name}/speedup_vs_issue_figure", (1 / step_s) / per_s, "x")
        timed.append(Timed(name, spd_step, step_s))
    if variants == (False, True):
        ratio = statistics.median(r[0] / r[1] for r in rounds)
        emit(f"{preset}/eager_step_over_compiled", ratio, "x")
    return timed


def has_reference(python: str) -> bool:
    """Whether `python` runs and imports the reference implementation's training loop."""
    try:
        done = subprocess.run([python, "-c", "import spd.run_spd"], capture_output=True)
    except OSError:
        return False
    return done.returncode == 0


def reference_step_seconds(python: str, preset: str, n: int, threads: int) -> float:
    """One step of the reference implementation on this preset's target, timed by
    `reference_step.py` under the reference's own Python."""
    task = toy_task(resolve_config(preset), torch.device("cpu"))
    with tempfile.TemporaryDirectory() as tmp:
        weights = Path(tmp) / "target.pt"
        torch.save(task.target.state_dict(), weights)
        script = Path(__file__).with_name("reference_step.py")
        command = [python, str(script), preset, "--weights", str(weights)]
        command += ["--steps", str(max(n, 8)), "--threads", str(threads)]
        done = subprocess.run(command, capture_output=True, text=True, cwd=tmp)
    if done.returncode != 0:
        raise SystemExit(f"reference_step.py failed for {preset}:\n{done.stderr[-3000:]}")
    return json.loads(done.stdout.strip().splitlines()[-1])["value"] / 1000


def main() -> None:
    parser = argparse.ArgumentParser(
        description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter
    )
    parser.add_argument("presets", nargs="+")
    parser.add_argument("--steps", type=int, default=30, help="timed steps per preset")
    parser.add_argument("--threads", type=int, default=1)
    parser.add_argument("--device", default="cpu")
    parser.add_argument(
        "--ci-fn-kernels",
        choices=["preset", "both"],
        default="preset",
        help="'both': time each preset with compile_ci_fn off and on, side by side "
        "(presets whose CI function is the paper's one-hidden-layer mlp)",
    )
    parser.add_argument(
        "--reference-python",
        help="the Python of an environment with the reference implementation installed "
        "(benchmarks/setup_reference.sh): time its step on each preset in the same run",
    )
    args = parser.parse_args()
    if args.reference_python is not None and args.device != "cpu":
        parser.error("--reference-python times the reference on the CPU only")
    if args.reference_python is not None and not has_reference(args.reference_python):
        parser.error(
            f"{args.reference_python} cannot import the reference implementation (spd.run_spd); "
            "make its environment with benchmarks/setup_reference.sh"
        )
    torch.set_num_threads(args.threads)
    emit("torch_threads", torch.get_num_threads(), "threads")
    for preset in args.presets:
        variants = (False, True) if args.ci_fn_kernels == "both" else (None,)
        timed = measure(preset, args.steps, args.device, variants)
        if args.reference_python is not None:
            reference_s = reference_step_seconds(
                args.reference_python, preset, args.steps, args.threads
            )
            emit(f"{preset}/reference_step_time", reference_s * 1000, "ms")
            for t in timed:  # ours again after the reference, against drift meanwhile
                after_s = time_per_call(t.step, max(args.steps // 2, 1), warmup=0)
                emit(f"{t.name}/step_time_after_reference", after_s * 1000, "ms")
                ours_s = (t.step_s + after_s) / 2
                emit(f"{t.name}/speedup_vs_reference", reference_s / ours_s, "x")


if __name__ == "__main__":
    main()
