"""Seconds per training step of the public reference implementation (goodfire-ai/spd) on a preset.

Runs under the reference's own Python (3.13, with its package importable), never this project's:
`benchmarks/speed.py --reference-python PY` calls it so that both step times come from one run on
one machine. Set-up of that environment: `benchmarks/setup_reference.sh`.

    PY benchmarks/reference_step.py tms-5-2-id --weights target.pt [--steps 40] [--threads 1]

The reference's own `optimize` loop runs the preset's paper config on the target whose state dict
is in `--weights` (this project's trained target, so both sides decompose the same model), with
wandb, evaluation metrics and the faithfulness warm-up switched off. It is timed for `--steps`
and for `--steps // 4` steps; the difference over the extra steps is one step's time, without the
loop's fixed costs (set-up, the step-0 evaluation, the final save). Prints one JSON line.
"""

from __future__ import annotations

import argparse
import json
import tempfile
import time
from pathlib import Path

import spd
import torch
from spd.configs import Config
from spd.experiments.resid_mlp.configs import ResidMLPModelConfig
from spd.experiments.resid_mlp.models import ResidMLP
from spd.experiments.resid_mlp.resid_mlp_dataset import ResidMLPDataset
from spd.experiments.tms.configs import TMSModelConfig
from spd.experiments.tms.models import TMSModel
from spd.run_spd import optimize
from spd.utils.data_utils import DatasetGeneratedDataLoader, SparseFeatureDataset

EXPERIMENTS = Path(spd.__file__).parent / "experiments"


def tms(n_features: int, n_hidden: int, n_hidden_layers: int, zero_bias: bool) -> TMSModel:
    return TMSModel(
        TMSModelConfig(
            n_features=n_features,
            n_hidden=n_hidden,
            n_hidden_layers=n_hidden_layers,
            tied_weights=True,
            init_bias_to_zero=zero_bias,
            device="cpu",
        )
    )


def resid_mlp(n_features: int, d_mlp: int, n_layers: int) -> ResidMLP:
    return ResidMLP(
        ResidMLPModelConfig(
            n_features=n_features,
            d_embed=1000,
            d_mlp=d_mlp,
            n_layers=n_layers,
            act_fn_name="relu",
            in_bias=False,
            out_bias=False,
        )
    )


# preset -> (the reference's config file for it, its target model class built to the same shape)
PRESETS = {
    "tms-5-2": ("tms/tms_5-2_config.yaml", lambda: tms(5, 2, 0, False)),
    "tms-5-2-id": ("tms/tms_5-2-id_config.yaml", lambda: tms(5, 2, 1, False)),
    "tms-40-10": ("tms/tms_40-10_config.yaml", lambda: tms(40, 10, 0, True)),
    "tms-40-10-id": ("tms/tms_40-10-id_config.yaml", lambda: tms(40, 10, 1, True)),
    "resid-mlp-1": ("resid_mlp/resid_mlp1_config.yaml", lambda: resid_mlp(100, 50, 1)),
    "resid-mlp-2": ("resid_mlp/resid_mlp2_config.yaml", lambda: resid_mlp(100, 25, 2)),
    "resid-mlp-3": ("resid_mlp/resid_mlp3_config.yaml", lambda: resid_mlp(102, 17, 3)),
}


def load_target(preset: str, weights: Path) -> torch.nn.Module:
    """The reference's model class for `preset`, holding the given state dict."""
    target = PRESETS[preset][1]()
    target.load_state_dict(torch.load(weights), strict=True)
    if isinstance(target, TMSModel):
        target.tie_weights_()
    return target.eval()


def reference_config(preset: str, steps: int, warmup: bool) -> Config:
    """The reference's config file for `preset` with `steps` steps (its lr schedule spans them),
    wandb and the reference's own evaluation off, and the faithfulness warm-up kept or dropped."""
    config = Config.from_file(EXPERIMENTS / PRESETS[preset][0])
    big = 10 * steps + 10  # logging and evaluation only at step 0
    update = {
        "wandb_project": None,
        "steps": steps,
        "train_log_freq": big,
        "eval_freq": big,
        "slow_eval_freq": big,
        "eval_metric_configs": [],
    }
    if not warmup:
        update["faithfulness_warmup_steps"] = 0
    return config.model_copy(update=update)


def reference_dataset(target: torch.nn.Module, config: Config) -> SparseFeatureDataset:
    """The reference's own data for `target`: fresh batches from the global RNG."""
    n = target.config.n_features
    p = config.task_config.feature_probability
    if isinstance(target, TMSModel):
        return SparseFeatureDataset(n, p, "cpu", "at_least_zero_active", (0.0, 1.0))
    return ResidMLPDataset(n, p, "cpu", calc_labels=False)


def run_optimize(target: torch.nn.Module, config: Config, out_dir: Path) -> None:
    """The reference's own `optimize` on `target` (which it changes), on `reference_dataset`;
    saves `model_{steps}.pth` in `out_dir`."""
    dataset = reference_dataset(target, config)
    loader = DatasetGeneratedDataLoader(dataset, batch_size=config.batch_size, shuffle=False)
    tied = [("linear1", "linear2")] if isinstance(target, TMSModel) else None
    optimize(target, config, "cpu", loader, loader, 1, out_dir, tied_weights=tied)


def run_loop(preset: str, weights: Path, steps: int) -> float:
    """Wall seconds of the reference's `optimize` for `steps` steps of the preset's config, on a
    fresh copy of the target, without the faithfulness warm-up."""
    config = reference_config(preset, steps, warmup=False)
    target = load_target(preset, weights)
    with tempfile.TemporaryDirectory() as out_dir:
        start = time.perf_counter()
        run_optimize(target, config, Path(out_dir))
        return time.perf_counter() - start


def main() -> None:
    parser = argparse.ArgumentParser(
        description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter
    )
    parser.add_argument("preset", choices=sorted(PRESETS))
    parser.add_argument("--weights", type=Path, required=True, help="the target's state dict")
    parser.add_argument("--steps", type=int, default=40, help="steps of the longer timed loop")
    parser.add_argument("--threads", type=int, default=1)
    args = parser.parse_args()
    if args.steps < 8:
        parser.error("--steps must be at least 8")
    torch.set_num_threads(args.threads)
    torch.manual_seed(0)
    short = args.steps // 4
    run_loop(args.preset, args.weights, short)  # warm-up: first-call costs land outside the timing
    seconds = run_loop(args.preset, args.weights, args.steps) - run_loop(
        args.preset, args.weights, short
    )
    step_ms = 1000 * seconds / (args.steps - short)
    print(
        json.dumps({"name": f"{args.preset}/reference_step_time", "value": step_ms, "unit": "ms"})
    )


if __name__ == "__main__":
    main()
