"""The public reference implementation's (goodfire-ai/spd) own decomposition of a preset's target,
saved for `benchmarks/quality.py --reference-python PY` to score with this project's metrics.

Runs under the reference's own Python (3.13, with its package importable), never this project's;
set-up: `benchmarks/setup_reference.sh`.

    PY benchmarks/reference_quality.py tms-40-10 --weights target.pt --out ref.pt [--steps 3000]

The reference's `optimize` runs the preset's reference config on the target whose state dict is
in `--weights` (this project's trained target), faithfulness warm-up included, with wandb and the
reference's own evaluation off; `--steps` replaces the step count (the lr schedule then spans
those steps) and `--autocast-bf16 0|1` the config's bf16 autocast (the reference's default is on;
this project's toy presets turn it off). Saved per decomposed module, in this project's
layout: U (C, d_out), V (C, d_in), the CI (lower) on the one-hot inputs 0.75·e_i, each
component's largest CI over `--eval-batches` fresh batches and the mean number of components
above the alive threshold per input on them.
"""

from __future__ import annotations

import argparse
import tempfile
from pathlib import Path

import torch
from reference_step import (
    EXPERIMENTS,
    PRESETS,
    load_target,
    reference_config,
    reference_dataset,
    run_optimize,
)
from spd.configs import Config
from spd.models.component_model import ComponentModel
from spd.utils.module_utils import expand_module_patterns


def trained_reference(
    preset: str, weights: Path, steps: int, seed: int, autocast_bf16: bool | None
) -> tuple[ComponentModel, Config]:
    """Run the reference's `optimize` and load its final saved state into a fresh model."""
    config = reference_config(preset, steps, warmup=True)
    update: dict = {"seed": seed}
    if autocast_bf16 is not None:
        update["autocast_bf16"] = autocast_bf16
    config = config.model_copy(update=update)
    torch.manual_seed(seed)
    with tempfile.TemporaryDirectory() as out_dir:
        run_optimize(load_target(preset, weights), config, Path(out_dir))
        state = torch.load(Path(out_dir) / f"model_{steps}.pth", weights_only=True)
    target = load_target(preset, weights).requires_grad_(False)
    model = ComponentModel(
        target_model=target,
        module_path_info=expand_module_patterns(target, config.all_module_info),
        ci_fn_type=config.ci_fn_type,
        ci_fn_hidden_dims=config.ci_fn_hidden_dims,
        pretrained_model_output_attr=config.pretrained_model_output_attr,
        sigmoid_type=config.sigmoid_type,
    )
    model.load_state_dict(state, strict=True)
    return model.eval(), config


def lower_ci(model: ComponentModel, x: torch.Tensor) -> dict[str, torch.Tensor]:
    """The reference's CI (lower, the one masks and L0 use) of every module on inputs `x`."""
    cache = model(x, cache_type="input").cache
    return model.calc_causal_importances(cache, sampling="continuous").lower_leaky


@torch.no_grad()
def summary(model: ComponentModel, config: Config, eval_batches: int) -> dict[str, dict]:
    """Per module: U, V (this project's layout), one-hot CI, largest CI and mean L0 on fresh data."""
    n = model.target_model.config.n_features
    one_hot = lower_ci(model, torch.eye(n) * 0.75)
    largest: dict[str, torch.Tensor] = {}
    l0 = dict.fromkeys(one_hot, 0.0)
    data = reference_dataset(model.target_model, config)
    for _ in range(eval_batches):
        x = data.generate_batch(config.eval_batch_size)[0]
        for name, ci in lower_ci(model, x).items():
            top = ci.max(0).values
            largest[name] = torch.maximum(largest[name], top) if name in largest else top
            l0[name] += (ci > config.ci_alive_threshold).sum(-1).float().mean().item()
    out = {}
    for name in one_hot:
        comp = model.components[name]
        out[name] = {
            "U": comp.U.detach().float().clone(),
            "V": comp.V.detach().float().T.clone(),
            "one_hot_ci": one_hot[name].float(),
            "max_ci": largest[name].float(),
            "l0": l0[name] / eval_batches,
        }
    return out


def main() -> None:
    parser = argparse.ArgumentParser(
        description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter
    )
    parser.add_argument("preset", choices=sorted(PRESETS))
    parser.add_argument("--weights", type=Path, required=True, help="the target's state dict")
    parser.add_argument("--out", type=Path, required=True, help="where to save the summary (.pt)")
    parser.add_argument("--steps", type=int, help="steps (default: the reference config's)")
    parser.add_argument("--seed", type=int, default=0)
    parser.add_argument("--eval-batches", type=int, default=10, help="fresh batches (default 10)")
    parser.add_argument("--threads", type=int, default=1)
    parser.add_argument(
        "--autocast-bf16", type=int, choices=[0, 1], help="default: the reference config's"
    )
    args = parser.parse_args()
    torch.set_num_threads(args.threads)
    steps = args.steps or Config.from_file(EXPERIMENTS / PRESETS[args.preset][0]).steps
    autocast = None if args.autocast_bf16 is None else bool(args.autocast_bf16)
    model, config = trained_reference(args.preset, args.weights, steps, args.seed, autocast)
    torch.save(summary(model, config, args.eval_batches), args.out)


if __name__ == "__main__":
    main()
