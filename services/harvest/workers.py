"""The Ray Data tasks of a harvest: each turns work items (a shard; a block of components) into
checkpoint files with spd_core's plain functions. Ray reuses a worker process for later tasks,
and the process keeps the decomposition it loaded, so a model is loaded once per process."""

from __future__ import annotations

import io
import time
from functools import lru_cache
from typing import Any

import numpy as np
import ray
import torch

from services.harvest.checkpoints import block_file, shard_file
from spd_core.harvest.logit_effects import logit_effects
from spd_core.harvest.run import harvest_shard
from spd_core.harvest.settings import HarvestSettings
from spd_core.loading import load_decomposition
from spd_core.model.component_model import ComponentModel
from spd_core.store.location import Location


@lru_cache(maxsize=1)
def _model(store: Location, fingerprint: str | None) -> ComponentModel:
    """The decomposition of `store` (as of `fingerprint`, its manifest's hash), loaded once per
    worker process."""
    torch.set_num_threads(1)
    return load_decomposition(store).model


def _inputs(ref: list, start: int, stop: int) -> torch.Tensor:
    """Rows [start, stop) of the harvest's inputs (a numpy array in the object store; the list
    keeps Ray Data from resolving the reference)."""
    return torch.from_numpy(np.array(ray.get(ref[0])[start:stop]))


def harvest_shards(
    batch: dict[str, np.ndarray],
    store: Location,
    fingerprint: str | None,
    settings: dict[str, Any],
    inputs: list,
    folder: Location,
    tokens: bool,
) -> dict[str, np.ndarray]:
    """Rows {"shard"} -> each shard's statistics saved as its checkpoint file; yields how many
    inputs each read and how long it took."""
    model = _model(store, fingerprint)
    s = HarvestSettings.from_json(settings)
    done, seconds = [], []
    for shard in batch["shard"].tolist():
        start = time.perf_counter()
        first = shard * s.shard_size
        x = _inputs(inputs, first, first + s.shard_size)
        harvest_shard(model, x, first, s, tokens).save(shard_file(folder, shard))
        done.append(x.shape[0])
        seconds.append(time.perf_counter() - start)
    return {"shard": batch["shard"], "inputs": np.array(done), "seconds": np.array(seconds)}


def logit_blocks(
    batch: dict[str, np.ndarray],
    store: Location,
    fingerprint: str | None,
    settings: dict[str, Any],
    inputs: list,
    folder: Location,
    examples: list,
    positions_per_input: int,
) -> dict[str, np.ndarray]:
    """Rows {"module_index", "start"} -> each block's mean logit changes saved as its checkpoint
    file; `examples` holds every block's example indices."""
    model = _model(store, fingerprint)
    s = HarvestSettings.from_json(settings)
    found = ray.get(examples[0])
    x = _inputs(inputs, 0, None)  # type: ignore[arg-type]
    for mi, start in zip(batch["module_index"].tolist(), batch["start"].tolist(), strict=True):
        module = model.module_names[mi]
        effects = logit_effects(
            model, x, module, start, found[(mi, start)], positions_per_input, s.batch_size
        )
        buffer = io.BytesIO()
        np.savez(buffer, mean_change=effects.mean_change)
        block_file(folder, mi, start).write_whole(buffer.getvalue())
    return {"module_index": batch["module_index"]}
