"""Build a tiny Llama target once into the cache, and find it there.

`<cache>/targets/<name>-<spec hash>/` is a plain Hugging Face folder (config.json,
model.safetensors, tokenizer files) plus `spd_target.json` (spec, check figures, timings). The
folder is written under a temporary name and renamed when complete, so a folder that exists is
whole; a model that fails its check is not written.
"""

from __future__ import annotations

import json
import os
import shutil
import tempfile
import time
from collections.abc import Callable
from pathlib import Path
from typing import Any

import torch

from spd_core.targets.registry import default_cache_dir
from spd_core.targets.tiny_llama.bpe import train_bpe_tokenizer
from spd_core.targets.tiny_llama.check import check_llama, validate_llama
from spd_core.targets.tiny_llama.export import save_hf_folder
from spd_core.targets.tiny_llama.spec import TINY_LLAMAS, TinyLlamaSpec
from spd_core.targets.tiny_llama.tokens import consecutive_windows, split_texts, token_stream
from spd_core.targets.tiny_llama.training import train_llama

MARKER = "spd_target.json"


def tiny_llama_spec(name: str) -> TinyLlamaSpec:
    """The spec of a named tiny Llama."""
    if name not in TINY_LLAMAS:
        raise ValueError(f"unknown tiny Llama {name!r}; known: {', '.join(TINY_LLAMAS)}")
    return TINY_LLAMAS[name]


def tiny_llama_dir(name: str, spec: TinyLlamaSpec, cache_dir: Path | None = None) -> Path:
    """Where the model folder of `spec` lives (built or not)."""
    root = cache_dir if cache_dir is not None else default_cache_dir()
    return Path(root) / "targets" / f"{name}-{spec.cache_key()}"


def built_tiny_llama(name: str, cache_dir: Path | None = None) -> Path | None:
    """The built folder of a named tiny Llama, or None if it has not been built."""
    folder = tiny_llama_dir(name, tiny_llama_spec(name), cache_dir)
    return folder if (folder / MARKER).is_file() else None


def build_tiny_llama(
    name: str,
    cache_dir: Path | None = None,
    log: Callable[[str], None] = print,
    force: bool = False,
    spec: TinyLlamaSpec | None = None,
) -> Path:
    """Train the tokenizer and the model of `name` (or of `spec`, stored under `name`), check
    it, and write its folder; a no-op if it is already built (unless `force`). Corpora must be
    fetched first (`spd data fetch`)."""
    spec = spec if spec is not None else tiny_llama_spec(name)
    folder = tiny_llama_dir(name, spec, cache_dir)
    if (folder / MARKER).is_file() and not force:
        return folder
    start = time.perf_counter()
    train_texts = list(split_texts(spec.corpora, "train", spec.eval_fraction, cache_dir))
    tokenizer = train_bpe_tokenizer(train_texts, spec.vocab_size)
    train_stream = token_stream(tokenizer, iter(train_texts))
    eval_stream = token_stream(
        tokenizer, split_texts(spec.corpora, "eval", spec.eval_fraction, cache_dir)
    )
    vocab = len(tokenizer)
    log(
        f"{name}: BPE tokenizer of {vocab} tokens in {time.perf_counter() - start:.0f} s; "
        f"{train_stream.numel():,} train / {eval_stream.numel():,} eval tokens"
    )
    model = train_llama(spec, train_stream, vocab, tokenizer.eos_token_id, log)
    train_seconds = time.perf_counter() - start
    windows = consecutive_windows(eval_stream, spec.eval_windows, spec.context_length)
    check = check_llama(model, windows, train_stream, vocab, spec.min_gain_over_unigram)
    log(f"{name}: {check.message}")
    validate_llama(check, name)
    model.eval()
    info: dict[str, Any] = {
        "name": name,
        "spec": spec.model_dump(mode="json"),
        "check": {
            "held_out_ce": check.model_ce,
            "unigram_ce": check.unigram_ce,
            "held_out_tokens": check.n_tokens,
            "min_gain_over_unigram": spec.min_gain_over_unigram,
        },
        "train_tokens": int(train_stream.numel()),
        "eval_tokens": int(eval_stream.numel()),
        "build_seconds": round(train_seconds, 1),
        "torch_threads": torch.get_num_threads(),
        "torch_version": torch.__version__,
    }
    folder.parent.mkdir(parents=True, exist_ok=True)
    tmp = Path(tempfile.mkdtemp(prefix=f".{name}-", dir=folder.parent))
    tmp.chmod(0o755)  # mkdtemp's 0700 would hide the model from other users of the cache
    try:
        save_hf_folder(model, tokenizer, tmp, spec.context_length)
        (tmp / MARKER).write_text(json.dumps(info, indent=2))
        if folder.exists():
            shutil.rmtree(folder)
        os.replace(tmp, folder)
    finally:
        shutil.rmtree(tmp, ignore_errors=True)
    log(f"{name}: written to {folder}")
    return folder
