"""A packaged model as a plain Hugging Face folder (config, tokenizer with its chat template,
safetensors), which any `from_pretrained` reader loads: what `transformers serve` needs to serve
the packaged SmolLM2-135M-Instruct as a local chat model."""

from __future__ import annotations

import os
import shutil
import tempfile
from pathlib import Path

from spd_core.hf.loading import load_hf_target
from spd_core.targets.registry import default_cache_dir

_MARKER = "model.safetensors"


def pretrained_folder(model: str, cache_dir: Path | None = None) -> Path:
    """`<cache>/hf/<model>-pretrained/`, written once from `load_hf_target(model)` (fp32)."""
    root = Path(cache_dir if cache_dir is not None else default_cache_dir()) / "hf"
    folder = root / f"{model}-pretrained"
    if (folder / _MARKER).is_file():
        return folder
    target = load_hf_target(model)
    root.mkdir(parents=True, exist_ok=True)
    tmp = Path(tempfile.mkdtemp(prefix=".pretrained-", dir=root))
    try:
        target.model.config.use_cache = True  # a server generates token by token
        target.model.save_pretrained(tmp, safe_serialization=True)
        target.tokenizer.save_pretrained(tmp)
        if folder.exists():
            shutil.rmtree(folder)
        os.replace(tmp, folder)
    finally:
        shutil.rmtree(tmp, ignore_errors=True)
    return folder
