"""A byte-level BPE tokenizer trained with the `tokenizers` library, as a transformers tokenizer.

Byte-level: every string encodes (no unknown token) and decodes back exactly. One special token,
`<|endoftext|>` (id 0), separates documents; it serves as BOS, EOS and padding.
"""

from __future__ import annotations

from collections.abc import Iterable
from typing import Any

from spd_core.extras import require

END_OF_TEXT = "<|endoftext|>"


def train_bpe_tokenizer(texts: Iterable[str], vocab_size: int) -> Any:
    """A `PreTrainedTokenizerFast` with `vocab_size` entries learned from `texts` (256 byte
    tokens, the end-of-text token, then merges by frequency)."""
    require("transformers", "training a BPE tokenizer")
    from tokenizers import Tokenizer, decoders, models, pre_tokenizers, trainers
    from transformers import PreTrainedTokenizerFast

    tok = Tokenizer(models.BPE())
    tok.pre_tokenizer = pre_tokenizers.ByteLevel(add_prefix_space=False)
    tok.decoder = decoders.ByteLevel()
    trainer = trainers.BpeTrainer(
        vocab_size=vocab_size,
        special_tokens=[END_OF_TEXT],
        initial_alphabet=pre_tokenizers.ByteLevel.alphabet(),
        show_progress=False,
    )
    tok.train_from_iterator(texts, trainer=trainer)
    return PreTrainedTokenizerFast(
        tokenizer_object=tok,
        bos_token=END_OF_TEXT,
        eos_token=END_OF_TEXT,
        pad_token=END_OF_TEXT,
        model_max_length=None,
    )
