"""`spd harvest` as a Ray job: Ray Data streams the shards through at most --workers tasks at a
time, every finished shard is a checkpoint file, and the driver merges them in shard order and
writes the harvest into the store.

Why Ray Data and not Ray Train: a harvest is a map (shards -> partial statistics) and a reduce
(exact merges), with no collective between workers. Ray Data streams work items with
backpressure, retries a failed item alone (Ray Train restarts every worker of the group), and
hands each finished shard to the driver as it completes, which is what progress and
checkpoints need. Its tasks run on worker processes that Ray reuses, each keeping the model it
loaded, so a second harvest in the same Ray session starts in a fraction of a second; an actor
pool, like a Train worker group, starts fresh processes (torch imported anew) every time.
"""

from __future__ import annotations

import io
import logging
import sys
import time
from collections.abc import Callable
from dataclasses import dataclass
from pathlib import Path

import numpy as np
import ray

from services.harvest.checkpoints import (
    HarvestCheckpoints,
    block_file,
    checkpoint_dir_for,
    shard_file,
)
from services.harvest.workers import harvest_shards, logit_blocks
from services.ray_cluster import connect
from spd_core.harvest.accumulator import HarvestPartial
from spd_core.harvest.inputs import HarvestInputs, harvest_inputs, n_shards
from spd_core.harvest.run import (
    LOGIT_BLOCK,
    ablation_blocks,
    assemble_changes,
    block_examples,
    decoder,
    empty_partial,
    harvest_attrs,
    is_causal_lm,
)
from spd_core.harvest.settings import HarvestSettings
from spd_core.harvest.summarize import HarvestResult, summarize
from spd_core.harvest.writer import decomposition_fingerprint, write_harvest
from spd_core.loading import Decomposition, load_decomposition
from spd_core.store import FactorStore
from spd_core.store.location import Location
from spd_core.store.portable import portable

Report = Callable[[str], None]


def _stderr(line: str) -> None:
    print(line, file=sys.stderr, flush=True)


@dataclass
class HarvestPlan:
    """Everything fixed before any work: the store, its model, the inputs, the settings and the
    checkpoint folder (checked against --resume)."""

    store: FactorStore
    fingerprint: str | None
    decomposition: Decomposition
    inputs: HarvestInputs
    settings: HarvestSettings
    checkpoints: HarvestCheckpoints


def plan_harvest(
    store_path: str | Path | Location,
    *,
    tokens: int | None = None,
    inputs: int | None = None,
    settings: dict | None = None,
    checkpoint_dir: str | Path | Location | None = None,
    resume: bool = False,
) -> HarvestPlan:
    """Open and check everything; StoreError / HarvestInputError / CheckpointError / ValueError
    with a message, and nothing written, when the harvest cannot run as asked."""
    store = FactorStore.open(store_path)  # refuses an incomplete or damaged store
    decomposition = load_decomposition(store)  # refuses a store whose model files are gone
    chosen = HarvestSettings(threshold=decomposition.config.ci_alive_threshold, **(settings or {}))
    found = harvest_inputs(store, decomposition, chosen, tokens=tokens, inputs=inputs)
    fingerprint = decomposition_fingerprint(store.path, store.root)
    identity = {
        "store": str(store.location),
        "decomposition_manifest_sha256": fingerprint,
        "settings": chosen.to_json(),
        "n_inputs": found.n_inputs,
        "inputs_sha256": found.fingerprint(),
    }
    folder = checkpoint_dir_for(store.location, checkpoint_dir)
    checkpoints = HarvestCheckpoints(folder, identity)
    checkpoints.check(resume)
    return HarvestPlan(store, fingerprint, decomposition, found, chosen, checkpoints)


def _data_context() -> None:
    """No progress bars or execution banners of Ray Data: the job prints its own progress."""
    ctx = ray.data.DataContext.get_current()
    ctx.enable_progress_bars = False
    ctx.print_on_execution_start = False
    logging.getLogger("ray.data").setLevel(logging.ERROR)


def _task_kwargs(plan: HarvestPlan, inputs_ref: ray.ObjectRef) -> dict:
    """What every task gets: the store and the shards' folder as locations that any node opens
    with the driver's credentials (`portable`), and the settings."""
    return {
        "store": portable(plan.store.location),
        "fingerprint": plan.fingerprint,
        "settings": plan.settings.to_json(),
        "inputs": [inputs_ref],
        "folder": portable(plan.checkpoints.folder),
    }


def _run_shards(plan: HarvestPlan, workers: int, inputs_ref: ray.ObjectRef, report: Report) -> None:
    total_shards = n_shards(plan.inputs.n_inputs, plan.settings)
    folder = plan.checkpoints.folder
    done = set(folder.names())
    pending = [s for s in range(total_shards) if shard_file(folder, s).name not in done]
    todo = sum(len(plan.inputs.shard(s, plan.settings)[1]) for s in pending)  # inputs left
    done_inputs = plan.inputs.n_inputs - todo
    if done_inputs:
        report(f"harvest: resuming, {total_shards - len(pending)} of {total_shards} shards done")
    if not pending:
        return
    per_input = plan.inputs.tokens_per_input
    unit = "tokens" if plan.inputs.kind != "vectors" else "inputs"
    ds = ray.data.from_items([{"shard": s} for s in pending]).map_batches(
        harvest_shards,
        fn_kwargs={**_task_kwargs(plan, inputs_ref), "tokens": plan.inputs.kind != "vectors"},
        batch_size=1,
        compute=ray.data.TaskPoolStrategy(size=workers),
        num_cpus=1,
    )
    start = time.perf_counter()
    seen, finished = 0, total_shards - len(pending)
    for row in ds.iter_rows():
        seen += int(row["inputs"])
        finished += 1
        elapsed = time.perf_counter() - start
        rate = seen * per_input / elapsed
        eta = (todo - seen) * per_input / rate if rate > 0 else float("nan")
        report(
            f"harvest: shard {finished}/{total_shards} · {(done_inputs + seen) * per_input:,} "
            f"{unit} · {rate:,.0f} {unit}/s · ETA {eta:,.0f} s"
        )


def merge_shards(plan: HarvestPlan) -> HarvestPartial:
    """Every shard's statistics, added in shard order."""
    model = plan.decomposition.model
    total = empty_partial(model, plan.settings)
    for s in range(n_shards(plan.inputs.n_inputs, plan.settings)):
        path = shard_file(plan.checkpoints.folder, s)
        total.merge(HarvestPartial.load(path, total.modules, total.sizes, plan.settings))
    return total


def _run_logits(
    plan: HarvestPlan,
    total: HarvestPartial,
    workers: int,
    inputs_ref: ray.ObjectRef,
    report: Report,
) -> dict[str, np.ndarray]:
    model = plan.decomposition.model
    folder = plan.checkpoints.folder
    index = {m: i for i, m in enumerate(model.module_names)}
    blocks = ablation_blocks(model)
    done = set(folder.names())
    pending = [(m, a, b) for m, a, b in blocks if block_file(folder, index[m], a).name not in done]
    if pending:
        report(f"harvest: logit effects of {len(pending)} blocks of up to {LOGIT_BLOCK} components")
        examples = {(index[m], a): block_examples(total, m, a, b) for m, a, b in pending}
        ds = ray.data.from_items([{"module_index": index[m], "start": a} for m, a, _ in pending])
        ds = ds.map_batches(
            logit_blocks,
            fn_kwargs={
                **_task_kwargs(plan, inputs_ref),
                "examples": [ray.put(examples)],
                "positions_per_input": total.positions_per_input,
            },
            batch_size=1,
            compute=ray.data.TaskPoolStrategy(size=workers),
            num_cpus=1,
        )
        for _ in ds.iter_rows():
            pass
    found = {}
    for m, a, _ in blocks:
        with np.load(io.BytesIO(block_file(folder, index[m], a).read_bytes())) as data:
            found[(m, a)] = data["mean_change"]
    return assemble_changes(found, model)


def run_harvest(
    plan: HarvestPlan,
    *,
    workers: int = 1,
    address: str | None = None,
    report: Report = _stderr,
) -> HarvestResult:
    """Run a planned harvest on Ray (a local one unless `address`) and store it."""
    plan.checkpoints.prepare()
    started = connect(address)
    try:
        _data_context()
        inputs_ref = ray.put(plan.inputs.inputs.numpy())
        begin = time.perf_counter()
        _run_shards(plan, workers, inputs_ref, report)
        total = merge_shards(plan)
        changes = None
        if is_causal_lm(plan.decomposition) and plan.settings.ablation_examples:
            changes = _run_logits(plan, total, workers, inputs_ref, report)
        arrays = summarize(total, plan.inputs, changes, decoder(plan.decomposition, plan.inputs))
        seconds = time.perf_counter() - begin
    finally:
        if started:
            ray.shutdown()
    attrs = harvest_attrs(
        plan.decomposition,
        plan.inputs,
        plan.settings,
        total,
        {"workers": workers, "seconds": seconds},
    )
    result = HarvestResult(arrays, attrs)
    write_harvest(plan.store.location, result)
    plan.checkpoints.remove()
    return result
