"""Write a model and its tokenizer as a standard Hugging Face folder (config.json,
model.safetensors, tokenizer files) that `transformers` loads without spd."""

from __future__ import annotations

import json
from pathlib import Path
from typing import Any

# transformers 5 names its own class (TokenizersBackend) in tokenizer_config.json, which 4.x does
# not know; PreTrainedTokenizerFast reads tokenizer.json in both, so the folder names that.
PORTABLE_TOKENIZER_CLASS = "PreTrainedTokenizerFast"


def save_hf_folder(model: Any, tokenizer: Any, folder: Path, context_length: int) -> None:
    """`model.save_pretrained` (safetensors, fp32) and `tokenizer.save_pretrained` into `folder`;
    the tokenizer's `model_max_length` is the model's context."""
    from transformers.utils import logging as hf_logging

    hf_logging.disable_progress_bar()
    folder.mkdir(parents=True, exist_ok=True)
    model.save_pretrained(folder, safe_serialization=True)
    tokenizer.model_max_length = context_length
    tokenizer.save_pretrained(folder)
    config_path = folder / "tokenizer_config.json"
    if not (folder / "tokenizer.json").is_file():
        return  # a tokenizer of its own files (sentencepiece, vocab.txt) keeps its own class
    config = json.loads(config_path.read_text())
    config["tokenizer_class"] = PORTABLE_TOKENIZER_CLASS
    config_path.write_text(json.dumps(config, indent=2) + "\n")
