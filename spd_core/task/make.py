"""The task for a config's target: a toy target spd trains itself, or a Hugging Face model."""

from __future__ import annotations

from pathlib import Path

import torch

from spd_core.config import Config
from spd_core.task.definition import DecompositionTask
from spd_core.task.toy import toy_task


def make_task(
    config: Config, device: torch.device, cache_dir: Path | None = None
) -> DecompositionTask:
    """The task for the config's target: a toy target or a Hugging Face model."""
    if config.target is not None and config.target.kind == "hf":
        from spd_core.task.hf import hf_task

        return hf_task(config, device, cache_dir)
    return toy_task(config, device, cache_dir)
