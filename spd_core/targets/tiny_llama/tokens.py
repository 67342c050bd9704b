"""The token streams a tiny Llama trains and is checked on, and random windows of them.

A split is every passage of that split of each corpus (corpus order, then passage order), each
followed by the end-of-text token: the same text and separators that `spd_core.text.windows`
cuts a decomposition's windows from, so the eval split here is the eval split there.
"""

from __future__ import annotations

from collections.abc import Iterator, Sequence
from pathlib import Path
from typing import Any

import torch
from torch import Tensor

from spd_core.text.corpora import passages


def split_texts(
    corpora: Sequence[str], split: str, eval_fraction: float, cache_dir: Path | None = None
) -> Iterator[str]:
    """The passages of one split ('train' or 'eval') of each corpus, in a fixed order."""
    for corpus in corpora:
        for passage in passages(corpus, split, eval_fraction, cache_dir):
            yield passage.text


def token_stream(tokenizer: Any, texts: Iterator[str], batch: int = 256) -> Tensor:
    """1-D int64 ids of the texts, each followed by the tokenizer's end-of-text id."""
    eos = int(tokenizer.eos_token_id)
    backend = tokenizer.backend_tokenizer
    ids: list[int] = []
    chunk: list[str] = []

    def flush() -> None:
        for enc in backend.encode_batch(chunk, add_special_tokens=False):
            ids.extend(enc.ids)
            ids.append(eos)
        chunk.clear()

    for text in texts:
        chunk.append(text)
        if len(chunk) == batch:
            flush()
    flush()
    return torch.tensor(ids, dtype=torch.int64)


def random_windows(stream: Tensor, n: int, length: int, generator: torch.Generator) -> Tensor:
    """(n, length) windows of `stream` starting at uniformly drawn offsets."""
    if stream.numel() < length:
        raise ValueError(f"a stream of {stream.numel()} tokens has no window of {length}")
    starts = torch.randint(0, stream.numel() - length + 1, (n,), generator=generator)
    return stream[starts[:, None] + torch.arange(length)]


def consecutive_windows(stream: Tensor, n: int, length: int) -> Tensor:
    """The first `n` non-overlapping windows of `stream` (fewer if it is shorter)."""
    n = min(n, stream.numel() // length)
    if n == 0:
        raise ValueError(f"a stream of {stream.numel()} tokens has no window of {length}")
    return stream[: n * length].view(n, length)
