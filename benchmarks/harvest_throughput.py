"""Harvest throughput against a bare forward of the decomposed model with its CI functions.

    python benchmarks/harvest_throughput.py STORE [--tokens N | --inputs N] [--workers 1 2]
        [--shard-size N] [--batch-size N]

On the same inputs (the harvest's: corpus windows in order, or the toy's generator) and batches,
each ratio against a bare forward timed just before it (this CPU's speed drifts within minutes):
- bare: the clean pass plus the CI functions (model.prepare + causal_importances), one torch
  thread, in this process: tokens (or inputs) per second;
- paired: batch by batch, the forward then the statistics' update of that batch, timed back to
  back: the update's seconds per forward second, and the steady-state rate of a harvest relative
  to bare, 1 / (1 + that), which the CPU's drift does not move;
- in-process: spd_core's harvest of those inputs, one thread: the shards (statistics, merged)
  and their ratio to bare; then, in seconds, the logit effects (causal language models, 4
  examples per component: they scale with components, not tokens) and the summary (decoding
  contexts and tokens, choosing partners);
- Ray: `spd harvest`'s job (statistics only) on a local Ray with each --workers count (one CPU
  and one thread each), run twice, the second run timed (the first starts Ray's worker
  processes): its rate and its ratio to bare, in all and until the last shard finished (the
  per-token part; what follows, merging the shards, summarizing and writing, is a fixed cost,
  in seconds); on this 2-core machine, 2 workers share the cores with the driver and whatever
  else runs;
The store is copied to a temporary folder; it is never changed.
"""

from __future__ import annotations

import argparse
import shutil
import tempfile
import time
from pathlib import Path

import torch
from jsonl import emit

from spd_core.harvest import HarvestSettings, harvest_inputs
from spd_core.harvest.inputs import n_shards
from spd_core.harvest.run import (
    ablation_blocks,
    decoder,
    empty_partial,
    harvest_shard,
    is_causal_lm,
    logit_changes,
)
from spd_core.harvest.summarize import summarize
from spd_core.loading import load_decomposition
from spd_core.store import FactorStore


def bare_rate(dec, inputs: torch.Tensor, batch_size: int, per_input: int) -> float:
    model = dec.model
    start = time.perf_counter()
    with torch.no_grad():
        for at in range(0, len(inputs), batch_size):
            model.causal_importances(model.prepare(inputs[at : at + batch_size]))
    return len(inputs) * per_input / (time.perf_counter() - start)


def paired_batches(dec, inputs: torch.Tensor, settings: HarvestSettings, tokens: bool) -> float:
    """Seconds of the statistics per second of forward (clean pass + CI), timed batch by batch
    on the same batches, one right after the other, so that the CPU's drift cancels."""
    partial = empty_partial(dec.model, settings)
    forward = statistics = 0.0
    with torch.no_grad():
        for at in range(0, len(inputs), settings.batch_size):
            x = inputs[at : at + settings.batch_size]
            start = time.perf_counter()
            ci = dec.model.causal_importances(dec.model.prepare(x)).lower
            middle = time.perf_counter()
            partial.update(ci, at, x if tokens else None)
            forward += middle - start
            statistics += time.perf_counter() - middle
    return statistics / forward


def ray_run(
    store: Path, args: argparse.Namespace, workers: int, settings: dict
) -> tuple[float, float]:
    """Seconds of one `spd harvest` job on a fresh copy of the store: in all, and until its last
    shard finished (the rest: merging, summarizing, writing, and the logit effects if asked)."""
    from services.harvest.job import plan_harvest, run_harvest

    with tempfile.TemporaryDirectory() as tmp:
        copy = Path(tmp) / "store.zarr"
        shutil.copytree(store, copy)
        plan = plan_harvest(copy, tokens=args.tokens, inputs=args.inputs, settings=settings)
        last_shard = [0.0]

        def report(line: str) -> None:
            if line.startswith("harvest: shard"):
                last_shard[0] = time.perf_counter() - start

        start = time.perf_counter()
        run_harvest(plan, workers=workers, report=report)
        return time.perf_counter() - start, last_shard[0]


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("store")
    amount = parser.add_mutually_exclusive_group()
    amount.add_argument("--tokens", type=int)
    amount.add_argument("--inputs", type=int)
    parser.add_argument("--workers", type=int, nargs="+", default=[1, 2])
    parser.add_argument("--shard-size", type=int, default=64)
    parser.add_argument("--batch-size", type=int, default=32)
    args = parser.parse_args()
    torch.set_num_threads(1)

    store = FactorStore.open(args.store)
    dec = load_decomposition(store)
    sizes = {"shard_size": args.shard_size, "batch_size": args.batch_size}
    stats_only = HarvestSettings(dec.config.ci_alive_threshold, **sizes)
    found = harvest_inputs(store, dec, stats_only, tokens=args.tokens, inputs=args.inputs)
    per = found.tokens_per_input
    unit = "inputs/s" if found.kind == "vectors" else "tokens/s"
    emit("harvest/positions", found.n_inputs * per, unit.split("/")[0])
    bare_rate(dec, found.inputs[: args.batch_size], args.batch_size, per)  # warm-up
    bare = bare_rate(dec, found.inputs, args.batch_size, per)
    emit("harvest/bare_forward_with_ci", bare, unit)
    # this CPU's speed drifts: every ratio is to a bare forward timed just before it
    extra = paired_batches(dec, found.inputs, stats_only, found.kind != "vectors")
    emit("harvest/statistics_seconds_per_forward_second", extra, "ratio")
    emit("harvest/steady_state_over_bare", 1 / (1 + extra), "ratio")

    bare = bare_rate(dec, found.inputs, args.batch_size, per)
    start = time.perf_counter()
    total = empty_partial(dec.model, stats_only)
    for shard in range(n_shards(found.n_inputs, stats_only)):
        first, x = found.shard(shard, stats_only)
        total.merge(harvest_shard(dec.model, x, first, stats_only, found.kind != "vectors"))
    here = found.n_inputs * per / (time.perf_counter() - start)
    emit("harvest/in_process_shards", here, unit)
    emit("harvest/in_process_shards_over_bare", here / bare, "ratio")
    if is_causal_lm(dec):
        start = time.perf_counter()
        changes = logit_changes(dec.model, found, total, ablation_blocks(dec.model))
        emit("harvest/in_process_logit_effects", time.perf_counter() - start, "s")
    else:
        changes = None
    start = time.perf_counter()
    summarize(total, found, changes, decoder(dec, found))
    emit("harvest/in_process_summarize", time.perf_counter() - start, "s")

    import ray

    ray.init(num_cpus=max(args.workers) + 1, include_dashboard=False, log_to_driver=False)
    try:
        settings = {**sizes, "ablation_examples": 0}
        seconds = {}
        for workers in args.workers:
            ray_run(Path(args.store), args, workers, settings)  # starts the worker processes
            bare = bare_rate(dec, found.inputs, args.batch_size, per)
            emit(f"harvest/bare_forward_with_ci_before_ray_{workers}_workers", bare, unit)
            seconds[workers], shards = ray_run(Path(args.store), args, workers, settings)
            rate = found.n_inputs * per / seconds[workers]
            emit(f"harvest/ray_{workers}_workers", rate, unit)
            emit(f"harvest/ray_{workers}_workers_over_bare", rate / bare, "ratio")
            emit(f"harvest/ray_{workers}_workers_shards", found.n_inputs * per / shards, unit)
            emit(
                f"harvest/ray_{workers}_workers_shards_over_bare",
                found.n_inputs * per / shards / bare,
                "ratio",
            )
            emit(f"harvest/ray_{workers}_workers_after_shards", seconds[workers] - shards, "s")
    finally:
        ray.shutdown()


if __name__ == "__main__":
    main()
