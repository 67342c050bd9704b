"""A language-model preset decomposed by this project and, beside it in the same run, by the public
reference implementation (goodfire-ai/spd, `dev` branch) on the same model, windows, steps, batch
and seed: CE-unrecovered under CI, rounded-CI and stochastic masks, L0 per token, steps/s.

    python benchmarks/lm_side_by_side.py [--preset tiny-llama-2l] [--steps 2000] [--threads 1]
        [--reference-python ref-venv/bin/python] [--time-steps 100] [--only-timing]
        [--importance-coeff 1e-3]

The reference's `optimize` (run by `benchmarks/reference_lm.py` under its own Python) gets the
preset translated into its own config (same CI function shape, losses and coefficients,
schedules, warm-up, clipping) and trains on exactly the windows this project's run trains on, in
the same order; both evaluate on the same held-out windows at the last step, each with its own
CE/KL and L0 code (the same definitions: docs/language-models.md). Both run at once, one process
each with `--threads` torch threads, so that they share the machine's load alike; their steps/s
overlap only while both run (the one that finishes first leaves the other the machine), so
`--time-steps N` also times each side alone, alternating (`alone/...` lines). Lines without
`/reference/` are this project's. Needs the built target (`spd data build-target tiny-llama-2l`).
"""

from __future__ import annotations

import argparse
import json
import subprocess
import tempfile
import time
from pathlib import Path

import torch
from jsonl import emit
from speed import has_reference

from spd_core.config import Config
from spd_core.hf.loading import resolve_source
from spd_core.presets import resolve_config
from spd_core.task import make_task
from spd_core.train.progress import ProgressEvent
from spd_core.train.single_process import decompose

CPU = torch.device("cpu")
FIGURES = {  # this project's metric -> the reference's eval metric key
    "lm/ce_unrecovered_ci": "ce_unrecovered_ci_masked",
    "lm/ce_unrecovered_rounded": "ce_unrecovered_rounded_masked",
    "lm/ce_unrecovered_stoch": "ce_unrecovered_stoch_masked",
    "lm/ce_unrecovered_unmasked": "ce_unrecovered_unmasked",
}
KL_MASKS = ("ci", "rounded", "stoch")  # KL-unrecovered: KL under the mask over KL under zero


def reference_config(config: Config) -> dict:
    """The preset as the reference's own `Config` (JSON): evaluation only at the last step (and
    the reference's step 0), with its CE/KL and CI-L0 metrics."""
    seq_len = config.target.data.seq_len
    ci = config.ci_transformer
    if config.ci_fn_type != "global_shared_transformer" or ci is None:
        raise SystemExit("the side-by-side translates the global_shared_transformer CI fn only")
    return {
        "wandb_project": None,
        "seed": config.seed,
        "autocast_bf16": config.autocast_bf16,
        "ci_config": {
            "mode": "global",
            "fn_type": "global_shared_transformer",
            "simple_transformer_ci_cfg": {
                "d_model": ci.d_model,
                "n_blocks": ci.n_blocks,
                "mlp_hidden_dim": ci.mlp_hidden_dims or [4 * ci.d_model],
                "attn_config": {
                    "n_heads": ci.n_heads,
                    "max_len": seq_len,
                    "rope_base": ci.rope_base,
                },
            },
        },
        "n_mask_samples": config.n_mask_samples,
        "sampling": config.sampling,
        "sigmoid_type": config.sigmoid_type,
        "module_info": [m.model_dump(mode="json") for m in config.module_info],
        "use_delta_component": config.use_delta_component,
        "loss_metric_configs": [c.model_dump(mode="json") for c in config.loss_metric_configs],
        "output_loss_type": config.output_loss_type,
        "lr_schedule": config.lr_schedule.model_dump(mode="json"),
        "steps": config.steps,
        "batch_size": config.batch_size,
        "grad_clip_norm_components": config.grad_clip_norm_components,
        "faithfulness_warmup_steps": config.faithfulness_warmup_steps,
        "faithfulness_warmup_lr": config.faithfulness_warmup_lr,
        "train_log_freq": config.train_log_freq,
        "eval_freq": config.steps,
        "slow_eval_freq": config.steps,
        "slow_eval_on_first_step": False,
        "n_eval_steps": config.eval.n_eval_batches,
        "eval_batch_size": config.effective_eval_batch_size,
        "eval_metric_configs": [
            {"classname": "CEandKLLosses", "rounding_threshold": config.eval.rounding_threshold},
            {"classname": "CI_L0", "groups": {"total": ["*"]}},
        ],
        "ci_alive_threshold": config.ci_alive_threshold,
        "pretrained_model_class": "transformers.LlamaForCausalLM",
        "pretrained_model_output_attr": config.pretrained_model_output_attr,
        "task_config": {"task_name": "lm", "max_seq_len": seq_len},
    }


def windows(config: Config) -> dict[str, torch.Tensor]:
    """The windows this project's run trains on, in order, and its held-out windows. The
    reference's loop draws one batch before its first step, so the first batch comes twice."""
    task = make_task(config, CPU)
    batches = [task.batch_fn(config.batch_size, None) for _ in range(config.steps + 1)]
    n_eval = config.eval.n_eval_batches
    held_out = [task.eval_batch_fn(config.effective_eval_batch_size, None) for _ in range(n_eval)]
    return {"train": torch.cat([batches[0], *batches]), "eval": torch.cat(held_out)}


def run_ours(config: Config) -> tuple[dict[str, float], float]:
    """This project's final evaluation, and the loop's steps/s between its first and last
    logged steps (the warm-up and the evaluation are not in it)."""
    task = make_task(config, CPU)
    logged: list[tuple[int, float]] = []

    def on_progress(event: ProgressEvent) -> None:
        logged.append((event.step, time.perf_counter()))

    metrics = decompose(config, task, device=CPU, progress=on_progress).metrics
    (first, t0), (last, t1) = logged[0], logged[-1]
    return metrics, (last - first) / (t1 - t0)


def start_reference(python: str, config: Config, tmp: Path, threads: int) -> subprocess.Popen:
    """`reference_lm.py` on this config's windows, under the reference's Python, in `tmp`."""
    torch.save(windows(config), tmp / "windows.pt")
    (tmp / "config.json").write_text(json.dumps(reference_config(config)))
    command = [python, str(Path(__file__).with_name("reference_lm.py"))]
    command += ["--model", str(resolve_source(config.target.model))]
    command += ["--config", str(tmp / "config.json"), "--windows", str(tmp / "windows.pt")]
    command += ["--out", str(tmp / "summary.json"), "--threads", str(threads)]
    log = (tmp / "reference.log").open("w")  # a file: its progress bar fills a pipe
    return subprocess.Popen(command, cwd=tmp, stdout=log, stderr=log)


def reference_summary(process: subprocess.Popen, tmp: Path) -> dict:
    if process.wait() != 0:
        raise SystemExit(f"reference_lm.py failed:\n{(tmp / 'reference.log').read_text()[-3000:]}")
    return json.loads((tmp / "summary.json").read_text())


def time_alone(config: Config, python: str | None, steps: int, threads: int) -> None:
    """Steps/s of each side running alone, `steps` steps without the warm-up, alternating
    (ours, reference, ours, reference) and keeping each side's best round: the load this
    machine's other work puts on both is then alike."""
    config = config.model_copy(
        update={
            "steps": steps,
            "eval_freq": steps,
            "train_log_freq": max(1, steps // 5),
            "faithfulness_warmup_steps": 0,
        }
    )
    ours, theirs = [], []
    for _ in range(2):
        ours.append(run_ours(config)[1])
        if python:
            with tempfile.TemporaryDirectory() as tmp_name:
                tmp = Path(tmp_name)
                theirs.append(reference_summary(start_reference(python, config, tmp, threads), tmp))
    tokens = config.batch_size * config.target.data.seq_len
    emit(f"alone/{steps}/steps_per_s", max(ours), "steps/s")
    emit(f"alone/{steps}/tokens_per_s", max(ours) * tokens, "tokens/s")
    if theirs:
        best = max(t["steps_per_s"] for t in theirs)
        emit(f"alone/{steps}/reference/steps_per_s", best, "steps/s")
        emit(f"alone/{steps}/reference/tokens_per_s", best * tokens, "tokens/s")


def main() -> None:
    parser = argparse.ArgumentParser(
        description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter
    )
    parser.add_argument("--preset", default="tiny-llama-2l")
    parser.add_argument("--steps", type=int, default=2000)
    parser.add_argument("--threads", type=int, default=1)
    parser.add_argument(
        "--reference-python",
        help="the Python of an environment with the reference's dev branch "
        "(benchmarks/setup_reference.sh); without it only this project's side runs",
    )
    parser.add_argument(
        "--time-steps",
        type=int,
        default=0,
        help="also time each side alone for this many steps (twice, alternating); "
        "0: only the side-by-side run, whose rates overlap only while both run",
    )
    parser.add_argument(
        "--only-timing", action="store_true", help="skip the side-by-side quality run"
    )
    parser.add_argument(
        "--importance-coeff",
        type=float,
        help="both sides' importance-minimality coefficient instead of the preset's, for a "
        "second point on each side's sparsity/CE trade (equal-L0 comparisons)",
    )
    args = parser.parse_args()
    if args.reference_python and not has_reference(args.reference_python):
        parser.error(f"{args.reference_python} cannot import the reference (spd.run_spd)")
    if args.only_timing and not args.time_steps:
        parser.error("--only-timing needs --time-steps N")
    torch.set_num_threads(args.threads)
    config = resolve_config(args.preset)
    config = config.model_copy(
        update={
            "steps": args.steps,
            "eval_freq": args.steps,
            "train_log_freq": max(1, min(config.train_log_freq, args.steps // 5)),  # rates
            "eval": config.eval.model_copy(update={"during_training": False}),
        }
    )
    tag = f"{args.preset}/{args.steps}"
    if args.importance_coeff is not None:
        config = with_importance_coeff(config, args.importance_coeff)
        tag += f"/importance_{args.importance_coeff:g}"
    if not args.only_timing:
        side_by_side(config, args.reference_python, args.threads, tag)
    if args.time_steps:
        time_alone(config, args.reference_python, args.time_steps, args.threads)


def with_importance_coeff(config: Config, coeff: float) -> Config:
    """`config` with its importance-minimality loss weighted by `coeff`."""
    losses = [
        c.model_copy(update={"coeff": coeff}) if c.classname == "ImportanceMinimalityLoss" else c
        for c in config.loss_metric_configs
    ]
    return config.model_copy(update={"loss_metric_configs": losses})


def side_by_side(config: Config, python: str | None, threads: int, tag: str) -> None:
    """Both sides at once on the same windows; their final evaluations and steps/s."""
    with tempfile.TemporaryDirectory() as tmp_name:
        tmp = Path(tmp_name)
        reference = start_reference(python, config, tmp, threads) if python else None
        try:
            metrics, steps_per_s = run_ours(config)
        except BaseException:
            if reference is not None:
                reference.kill()
            raise
        emit(f"{tag}/steps_per_s", steps_per_s, "steps/s")
        for ours in FIGURES:
            emit(f"{tag}/{ours}", metrics[ours], "frac")
        for mask in KL_MASKS:
            emit(f"{tag}/lm/kl_unrecovered_{mask}", metrics[f"lm/kl_unrecovered_{mask}"], "frac")
        emit(f"{tag}/l0/total", metrics["l0/total"], "components/token")
        if reference is None:
            return
        summary = reference_summary(reference, tmp)
        emit(f"{tag}/reference/steps_per_s", summary["steps_per_s"], "steps/s")
        found = summary["eval"]  # CEandKLLosses under ce_kl/, CI_L0 as l0/<threshold>_total
        for ours, theirs in FIGURES.items():
            emit(f"{tag}/reference/{ours}", found[f"ce_kl/{theirs}"], "frac")
        for mask in KL_MASKS:
            kl = found[f"ce_kl/kl_{mask}_masked"] / found["ce_kl/kl_zero_masked"]
            emit(f"{tag}/reference/lm/kl_unrecovered_{mask}", kl, "frac")
        (l0_key,) = (k for k in found if k.startswith("l0/") and k.endswith("_total"))
        emit(f"{tag}/reference/l0/total", found[l0_key], "components/token")


if __name__ == "__main__":
    main()
