"""Text <-> token ids for a model's tokenizer, with the checks a caller (CLI, server) needs.

Pure functions of a tokenizer and plain data; the gRPC service tokenizes requests with these.
"""

from __future__ import annotations

from collections.abc import Sequence
from typing import Any

import torch
from torch import Tensor


class TextInputError(ValueError):
    """Text or token ids a model cannot take; the message says what is wrong."""


def encode_text(tokenizer: Any, text: str, context_length: int | None) -> list[int]:
    """Token ids of `text` as the model expects them (with its special tokens).

    Raises TextInputError if the text is longer than the model's context.
    """
    ids = list(tokenizer(text, add_special_tokens=True, verbose=False)["input_ids"])
    if not ids:
        raise TextInputError("text is empty: it has no tokens")
    if context_length is not None and len(ids) > context_length:
        raise TextInputError(
            f"text is {len(ids)} tokens long but the model's context is {context_length} "
            f"tokens; shorten it by {len(ids) - context_length} tokens"
        )
    return ids


def check_token_ids(
    ids: Tensor | Sequence[int], vocab_size: int, context_length: int | None
) -> Tensor:
    """`ids` as a (batch, seq) int64 tensor, after checking every id is in [0, vocab_size) and
    the sequence fits the context. Raises TextInputError naming the offending ids."""
    t = torch.as_tensor(ids)
    if t.is_floating_point() or t.dtype == torch.bool:
        raise TextInputError(f"token ids must be integers, got {t.dtype}")
    t = t.to(torch.int64)
    if t.dim() == 1:
        t = t.unsqueeze(0)
    if t.dim() != 2 or t.shape[-1] == 0:
        raise TextInputError(
            f"token ids must be (seq,) or (batch, seq), got shape {tuple(t.shape)}"
        )
    bad = t[(t < 0) | (t >= vocab_size)]
    if bad.numel():
        shown = sorted(set(bad.tolist()))[:10]
        raise TextInputError(
            f"unknown token ids {shown}: the vocabulary has ids 0..{vocab_size - 1}"
        )
    if context_length is not None and t.shape[-1] > context_length:
        raise TextInputError(
            f"{t.shape[-1]} tokens exceed the model's context of {context_length} tokens"
        )
    return t


def token_strings(tokenizer: Any, ids: Sequence[int]) -> list[str]:
    """Each token id decoded on its own (so a word split into pieces shows its pieces)."""
    return [tokenizer.decode([int(i)]) for i in ids]


def top_next_tokens(logits: Tensor, tokenizer: Any, k: int) -> list[tuple[int, str, float]]:
    """The k most probable next tokens from one position's logits (vocab,): (id, text, prob)."""
    probs = torch.softmax(logits.float(), dim=-1)
    top = probs.topk(min(k, probs.shape[-1]))
    return [
        (int(i), tokenizer.decode([int(i)]), float(p))
        for p, i in zip(top.values, top.indices, strict=True)
    ]
