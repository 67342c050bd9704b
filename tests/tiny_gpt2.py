"""A GPT-2 of random weights (2 layers, width 32) and a byte-level BPE tokenizer trained on the
fixture text, saved as a Hugging Face folder as a user's own GPT-2 would be: nothing downloaded."""

from __future__ import annotations

from pathlib import Path

import torch

from tests.hf_configs import FIXTURE

CONTEXT = 32


def gpt2_folder(folder: Path, vocab_size: int = 320) -> Path:
    """`folder` with config.json, model.safetensors and tokenizer files of a `GPT2LMHeadModel`
    (its LM head tied to the token embedding, as GPT-2's is)."""
    from transformers import GPT2Config, GPT2LMHeadModel

    from spd_core.targets.tiny_llama.bpe import train_bpe_tokenizer
    from spd_core.targets.tiny_llama.export import save_hf_folder

    texts = [p.read_text() for p in sorted(Path(FIXTURE).glob("*.txt"))]
    tokenizer = train_bpe_tokenizer(texts, vocab_size)
    config = GPT2Config(
        n_layer=2,
        n_embd=32,
        n_head=2,
        n_positions=CONTEXT,
        vocab_size=len(tokenizer),
        bos_token_id=tokenizer.bos_token_id,
        eos_token_id=tokenizer.eos_token_id,
    )
    torch.manual_seed(0)
    model = GPT2LMHeadModel(config).eval()
    save_hf_folder(model, tokenizer, folder, CONTEXT)
    return folder
