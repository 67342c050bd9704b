"""Where a preset's training step spends its time: the operations of a few profiled steps, per
step, as JSON lines (torch.profiler; on a GPU both host and device time).

    python benchmarks/profile_step.py resid-mlp-2 [--device cuda] [--steps 5] [--top 15]
    python benchmarks/profile_step.py resid-mlp-3 --device cuda --ci-fn-kernels eager

`step_time` is timed without the profiler (after 3 warm-up steps, which include any compilation).
`ops_per_step` counts every ATen call the step makes (nested calls included): on a GPU, where
small steps are bound by launching work rather than doing it, that count sets the step time.
Then one line per operation among the `--top` by host time (self time, profiled): calls, host ms
and device ms per step.
"""

from __future__ import annotations

import argparse
import json

import torch
from jsonl import emit
from speed import make_steps, time_per_call
from torch.profiler import ProfilerActivity, profile


def main() -> None:
    parser = argparse.ArgumentParser(
        description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter
    )
    parser.add_argument("preset")
    parser.add_argument("--device", default="cpu")
    parser.add_argument("--steps", type=int, default=5, help="profiled steps (after 3 warm-up)")
    parser.add_argument("--top", type=int, default=15, help="operations listed")
    parser.add_argument("--threads", type=int, default=1)
    parser.add_argument(
        "--ci-fn-kernels",
        choices=["preset", "eager", "compiled"],
        default="preset",
        help="the preset's compile_ci_fn, or force it off or on",
    )
    args = parser.parse_args()
    torch.set_num_threads(args.threads)
    compiled = {"preset": None, "eager": False, "compiled": True}[args.ci_fn_kernels]
    spd_step, _ = make_steps(args.preset, args.device, compiled)
    cuda = args.device.startswith("cuda")
    emit(f"{args.preset}/step_time", time_per_call(spd_step, args.steps) * 1000, "ms")
    activities = [ProfilerActivity.CPU] + ([ProfilerActivity.CUDA] if cuda else [])
    with profile(activities=activities) as prof:
        for _ in range(args.steps):
            spd_step()
        if cuda:
            torch.cuda.synchronize()
    events = prof.key_averages()
    n = args.steps
    emit(
        f"{args.preset}/ops_per_step",
        sum(e.count for e in events if e.key.startswith("aten::")) / n,
        "calls",
    )
    for e in sorted(events, key=lambda e: e.self_cpu_time_total, reverse=True)[: args.top]:
        device_us = getattr(e, "self_device_time_total", 0.0) if cuda else 0.0
        line = {
            "name": f"{args.preset}/op",
            "op": e.key,
            "calls_per_step": round(e.count / n, 1),
            "host_ms_per_step": round(e.self_cpu_time_total / n / 1e3, 3),
            "device_ms_per_step": round(device_us / n / 1e3, 3),
        }
        print(json.dumps(line), flush=True)


if __name__ == "__main__":
    main()
