"""The public reference implementation (goodfire-ai/spd, its `dev` branch: global CI functions and
persistent PGD) decomposing a Hugging Face causal LM on token windows this project chose, for
`benchmarks/lm_side_by_side.py --reference-python PY` to report beside this project's run.

Runs under the reference's own Python (3.13, with its package importable), never this project's;
set-up: `benchmarks/setup_reference.sh` on a checkout of the reference's `dev` branch.

    PY benchmarks/reference_lm.py --model HF_FOLDER --config ref_config.json \\
        --windows windows.pt --out summary.json [--threads 1]

`--config` is the reference's own `Config` as JSON (written by lm_side_by_side.py from the
preset); `--windows` holds `train` (steps × batch windows, in the order this project's run
trains on them) and `eval` (the held-out windows this project evaluates on). The reference's
`optimize` trains on `train` in order, faithfulness warm-up included, and evaluates with its own
metrics (CE/KL under masks, CI-L0) on `eval` at its last step. Writes the last evaluation's
figures and the loop's steps/s (timed between its train-log records, which exclude the
evaluations) as JSON.
"""

from __future__ import annotations

import argparse
import json
import tempfile
import time
from pathlib import Path
from typing import Any

import spd.run_spd as run_spd
import torch
from spd.configs import Config
from torch.utils.data import DataLoader
from transformers import LlamaForCausalLM


def loader(windows: torch.Tensor, batch_size: int) -> DataLoader:
    """Batches of `windows` in order; the generator only satisfies the reference's loop."""
    return DataLoader(
        windows.long(),  # a tensor: batches come as tensors, the format the loop takes
        batch_size=batch_size,
        shuffle=False,
        generator=torch.Generator().manual_seed(0),
    )


def main() -> None:
    parser = argparse.ArgumentParser(
        description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter
    )
    parser.add_argument("--model", type=Path, required=True, help="Hugging Face model folder")
    parser.add_argument("--config", type=Path, required=True, help="the reference's config JSON")
    parser.add_argument("--windows", type=Path, required=True, help="train/eval token windows")
    parser.add_argument("--out", type=Path, required=True, help="summary JSON to write")
    parser.add_argument("--threads", type=int, default=1)
    args = parser.parse_args()
    torch.set_num_threads(args.threads)

    config = Config(**json.loads(args.config.read_text()))
    windows = torch.load(args.windows, weights_only=True)
    target = LlamaForCausalLM.from_pretrained(args.model, torch_dtype=torch.float32).eval()
    records: list[tuple[int, float, dict[str, Any]]] = []
    log = run_spd.local_log

    def timed_log(data: dict[str, Any], step: int, out_dir: Path) -> None:
        records.append((step, time.perf_counter(), dict(data)))
        log(data, step, out_dir)

    run_spd.local_log = timed_log
    torch.manual_seed(config.seed)
    start = time.perf_counter()
    with tempfile.TemporaryDirectory() as out_dir:
        run_spd.optimize(
            target,
            config,
            "cpu",
            loader(windows["train"], config.batch_size),
            loader(windows["eval"], config.eval_batch_size),
            config.n_eval_steps,
            Path(out_dir),
        )
    wall = time.perf_counter() - start
    train = [(s, t) for s, t, d in records if "train/loss/total" in d and s > 0]
    (s0, t0), (s1, t1) = train[0], train[-1]
    final = [d for s, _, d in records if s == config.steps and "train/loss/total" not in d][-1]
    summary = {
        "steps_per_s": (s1 - s0) / (t1 - t0),
        "wall_s": wall,
        "eval": {k: float(v) for k, v in final.items() if isinstance(v, int | float)},
    }
    args.out.write_text(json.dumps(summary))


if __name__ == "__main__":
    main()
