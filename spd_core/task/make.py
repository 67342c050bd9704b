"""The task for a config's target: a toy target spd trains itself, or a Hugging Face model."""

from __future__ import annotations

from pathlib import Path

import torch

from spd_core.config import Config
from spd_core.task.definition import DecompositionTask
from spd_core.task.toy import toy_task


def make_task(
    config: Config,
    device: torch.device,
    cache_dir: Path | None = None,
    target_on_meta: bool = False,
) -> DecompositionTask:
    """The task for the config's target: a toy target or a Hugging Face model. With
    `target_on_meta` a Hugging Face model's parameters stay on the meta device, to be read
    from its files later (target sharding); a toy target is always built whole (it is small)."""
    if config.target is not None and config.target.kind == "hf":
        from spd_core.task.hf import hf_task

        return hf_task(config, device, cache_dir, target_on_meta)
    return toy_task(config, device, cache_dir)
