"""Fixed-length token windows from a corpus split, streamed and shuffled deterministically.

Passages of a split are visited in an order shuffled per epoch from the seed, tokenized one at a
time, joined with the tokenizer's end-of-text token (BERT: [SEP]) and cut into windows; each window
is wrapped in the tokenizer's own special tokens (BERT: [CLS] … [SEP]) so it is `seq_len` long.
"""

from __future__ import annotations

import random
from collections.abc import Iterator
from pathlib import Path
from typing import Any

import torch
from torch import Tensor

from spd_core.config import TextDataConfig
from spd_core.text.corpora import CorpusError, Passage, passages


def special_tokens(tokenizer: Any) -> tuple[list[int], list[int]]:
    """The ids the tokenizer puts before and after a text (BERT: [CLS] and [SEP])."""
    plain = list(tokenizer("a", add_special_tokens=False)["input_ids"])
    full = list(tokenizer("a", add_special_tokens=True)["input_ids"])
    for start in range(len(full) - len(plain) + 1):
        if full[start : start + len(plain)] == plain:
            return full[:start], full[start + len(plain) :]
    return [], []


def _separator(tokenizer: Any) -> list[int]:
    for attr in ("eos_token_id", "sep_token_id"):
        value = getattr(tokenizer, attr, None)
        if value is not None:
            return [int(value)]
    return []


def token_windows(tokenizer: Any, texts: Iterator[str], seq_len: int) -> Iterator[list[int]]:
    """Windows of exactly `seq_len` ids cut from the concatenated texts (a short tail is dropped)."""
    prefix, suffix = special_tokens(tokenizer)
    body = seq_len - len(prefix) - len(suffix)
    if body < 1:
        raise ValueError(f"seq_len {seq_len} leaves no room next to the special tokens")
    sep = _separator(tokenizer)
    buffer: list[int] = []
    for text in texts:
        buffer.extend(tokenizer(text, add_special_tokens=False, verbose=False)["input_ids"])
        buffer.extend(sep)
        while len(buffer) >= body:
            yield prefix + buffer[:body] + suffix
            del buffer[:body]


class WindowStream:
    """Endless batches of windows from one split: epoch e visits the split's passages in an order
    shuffled by (seed, e); windows pass through a shuffle buffer (none for `shuffle=False`)."""

    def __init__(
        self,
        tokenizer: Any,
        data: TextDataConfig,
        split: str,
        seed: int,
        shuffle: bool = True,
        cache_dir: Path | None = None,
    ) -> None:
        self._passages: list[Passage] = list(
            passages(data.corpus, split, data.eval_fraction, cache_dir)
        )
        if not self._passages:
            raise CorpusError(f"corpus '{data.corpus}' has no {split} passages")
        self._tokenizer = tokenizer
        self._seq_len = data.seq_len
        self._buffer_size = data.shuffle_buffer if shuffle else 1
        self._shuffle = shuffle
        self._rng = random.Random(seed)
        self._seed = seed
        self._windows = self._endless()

    def _epoch(self, epoch: int) -> Iterator[str]:
        order = list(range(len(self._passages)))
        if self._shuffle:
            random.Random(f"{self._seed}:{epoch}").shuffle(order)
        return (self._passages[i].text for i in order)

    def _endless(self) -> Iterator[list[int]]:
        epoch = 0
        buffer: list[list[int]] = []
        while True:
            produced = 0
            for window in token_windows(self._tokenizer, self._epoch(epoch), self._seq_len):
                produced += 1
                buffer.append(window)
                if len(buffer) >= self._buffer_size:
                    yield buffer.pop(self._rng.randrange(len(buffer)))
            if produced == 0:
                raise CorpusError(
                    f"the split has fewer tokens than one window of {self._seq_len}; "
                    "use a shorter seq_len or more text"
                )
            epoch += 1

    def skip(self, n_windows: int) -> None:
        """Draw and drop `n_windows` windows: the stream continues as if they had been used."""
        for _ in range(n_windows):
            next(self._windows)

    def next_batch(self, batch_size: int) -> Tensor:
        """(batch_size, seq_len) int64 token ids."""
        return torch.tensor([next(self._windows) for _ in range(batch_size)], dtype=torch.int64)


def eval_windows(
    tokenizer: Any, data: TextDataConfig, n: int, cache_dir: Path | None = None
) -> Tensor:
    """The first `n` windows of the eval split in corpus order: a fixed held-out slice."""
    return WindowStream(
        tokenizer, data, "eval", seed=0, shuffle=False, cache_dir=cache_dir
    ).next_batch(n)
