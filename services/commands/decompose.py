"""`spd decompose PRESET|CONFIG --out STORE`: run a decomposition on this process."""

from __future__ import annotations

import argparse
import sys
from pathlib import Path

import torch

from spd_core.component_model import ModuleSelectionError
from spd_core.config import ConfigError
from spd_core.decompose import decompose
from spd_core.hf.packaged import HFModelError
from spd_core.presets import preset_names, resolve_config
from spd_core.progress import ProgressEvent
from spd_core.store import FactorStore, StoreError
from spd_core.targets.validation import TargetTrainingError
from spd_core.task import make_task
from spd_core.text.corpora import CorpusError


def add_parser(sub: argparse._SubParsersAction) -> None:
    p = sub.add_parser(
        "decompose",
        help="decompose a target model (a preset or a YAML config) into a factor store",
        description="Train SPD components for a target and write them to a Zarr factor store. "
        f"Presets: {', '.join(preset_names())}. The store is marked complete only when the run "
        "finishes; an interrupted run leaves it incomplete.",
    )
    p.add_argument("config", metavar="PRESET|CONFIG.yaml", help="preset name or YAML config path")
    p.add_argument("--out", required=True, metavar="STORE", help="path of the .zarr store to write")
    p.add_argument("--steps", type=int, help="override the number of optimisation steps")
    p.add_argument("--seed", type=int, help="override the seed (components, masks, data)")
    p.add_argument("--overwrite", action="store_true", help="replace an existing store at --out")
    p.add_argument("--device", default="cpu", help="torch device, e.g. cpu or cuda (default cpu)")
    p.add_argument("--threads", type=int, help="torch CPU threads (default: torch's choice)")
    p.add_argument("--quiet", action="store_true", help="print only the final summary")


def _fail(message: str) -> int:
    print(f"spd decompose: error: {message}", file=sys.stderr)
    return 2


def run(args: argparse.Namespace) -> int:
    if args.threads:
        torch.set_num_threads(args.threads)
    try:
        config = resolve_config(args.config)
        updates = {k: getattr(args, k) for k in ("steps", "seed") if getattr(args, k) is not None}
        if updates.get("steps", 1) <= 0:
            return _fail("--steps must be positive")
        config = config.model_copy(update=updates)
        if Path(args.out).exists() and not args.overwrite:
            return _fail(_existing_store_message(args.out))
        task = make_task(config, torch.device(args.device))
        print(f"decomposing {args.config} for {config.steps} steps into {args.out}", flush=True)
        result = decompose(
            config,
            task,
            out=args.out,
            overwrite=args.overwrite,
            device=args.device,
            progress=None if args.quiet else _print_progress,
        )
    except (
        ConfigError,
        ModuleSelectionError,
        StoreError,
        TargetTrainingError,
        HFModelError,
        CorpusError,
    ) as err:
        return _fail(str(err))
    except KeyboardInterrupt:
        print(f"\ninterrupted: {args.out} is left marked incomplete", file=sys.stderr)
        return 130
    print(f"done: {result.store_path}")
    for key, value in sorted(result.metrics.items()):
        print(f"  {key:40s} {value:.6g}" if isinstance(value, float) else f"  {key:40s} {value}")
    return 0


def _print_progress(event: ProgressEvent) -> None:
    print(event.line(), flush=True)


def _existing_store_message(path: str) -> str:
    try:
        FactorStore.open(path)
        state = "a complete factor store"
    except StoreError:
        state = "something (an incomplete store or another file)"
    return f"{path} already holds {state}; pass --overwrite to replace it, or choose another --out"
