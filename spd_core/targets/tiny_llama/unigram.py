"""The baseline a language model must clearly beat: a unigram model of the training tokens."""

from __future__ import annotations

import torch
from torch import Tensor


def unigram_log_probs(train_tokens: Tensor, vocab_size: int, alpha: float = 1.0) -> Tensor:
    """(vocab_size,) log p(v) = log((count(v) + alpha) / (N + alpha · vocab_size)): token
    frequencies in `train_tokens` with add-alpha smoothing, so unseen tokens keep p > 0."""
    counts = torch.bincount(train_tokens.flatten(), minlength=vocab_size).double()
    return (counts + alpha).log() - (counts.sum() + alpha * vocab_size).log()


def unigram_ce(log_probs: Tensor, labels: Tensor) -> float:
    """Mean −log p(label) of the unigram model over `labels` (nats per token)."""
    return float(-log_probs[labels.flatten()].mean())
