"""The check of a tiny Llama: held-out next-token CE clearly below a unigram model's.

Both are scored on the same labels (tokens 1..context−1 of the first `spec.eval_windows`
non-overlapping windows of the eval split); the unigram model is the add-one-smoothed token
frequencies of the train split. The model must beat it by `spec.min_gain_over_unigram` nats per
token (default 1.0). tiny-llama-2l, seed 0: held-out CE 3.92 against the unigram model's 6.56.
"""

from __future__ import annotations

from dataclasses import dataclass
from typing import Any

import torch
from torch import Tensor

from spd_core.targets.tiny_llama.training import next_token_loss
from spd_core.targets.tiny_llama.unigram import unigram_ce, unigram_log_probs
from spd_core.targets.validation import TargetTrainingError


@dataclass(frozen=True)
class LlamaCheck:
    """Held-out CE of the model and of the unigram model (nats/token), and the verdict."""

    model_ce: float
    unigram_ce: float
    n_tokens: int
    ok: bool
    message: str


@torch.no_grad()
def held_out_ce(model: Any, windows: Tensor, batch: int = 32) -> float:
    """Mean next-token CE of `model` over `windows` (n, context), in batches."""
    total, count = 0.0, 0
    for chunk in windows.split(batch):
        n = chunk.shape[0] * (chunk.shape[1] - 1)
        total += next_token_loss(model(input_ids=chunk).logits, chunk).item() * n
        count += n
    return total / count


def check_llama(
    model: Any, eval_windows: Tensor, train_stream: Tensor, vocab_size: int, min_gain: float
) -> LlamaCheck:
    """Compare the model's held-out CE with the unigram model's on the same labels."""
    was_training = model.training
    model.eval()
    model_ce = held_out_ce(model, eval_windows)
    model.train(was_training)
    baseline = unigram_ce(unigram_log_probs(train_stream, vocab_size), eval_windows[:, 1:])
    gain = baseline - model_ce
    ok = gain >= min_gain
    message = (
        f"held-out CE {model_ce:.3f} vs unigram {baseline:.3f} nats/token: "
        f"{'beats' if ok else 'does not beat'} it by {min_gain} (gain {gain:.3f})"
    )
    return LlamaCheck(model_ce, baseline, eval_windows[:, 1:].numel(), ok, message)


def validate_llama(check: LlamaCheck, name: str) -> LlamaCheck:
    """Raise `TargetTrainingError` if the check failed."""
    if not check.ok:
        raise TargetTrainingError(f"{name}: {check.message}; train longer or with another seed")
    return check
