"""Checks that a trained induction target solves the task by the known mechanism.

On a fixed batch of repeated-span sequences: (1) next-token accuracy inside second copies (the
positions whose next token is fixed by the first copy); (2) a previous-token head in layer 0, one
head whose attention from t to t − 1 averages more than half; (3) an induction head in layer 1,
one head whose attention from second-copy position t to the position after its match in the
first copy averages more than half. induction-2l with seed 0 scores accuracy 1.000, previous-token
head 0.993, induction head 0.958 (seeds 1-3: accuracy 1.000, 0.68-0.97 and 0.85-0.96).
"""

from __future__ import annotations

from dataclasses import dataclass

import torch
from torch import Tensor

from spd_core.targets.induction.data import InductionData, RepeatedSpans
from spd_core.targets.induction.model import InductionTransformer
from spd_core.targets.validation import TargetTrainingError

MIN_ACCURACY = 0.95
MIN_PREV_TOKEN_ATTENTION = 0.5
MIN_INDUCTION_ATTENTION = 0.5
CHECK_ROWS = 512
CHECK_SEED = 1234


def prev_token_scores(pattern: Tensor) -> Tensor:
    """(H,) mean attention from each position t >= 1 to t − 1, of a layer's pattern (B, H, S, S)."""
    t = torch.arange(1, pattern.shape[-1], device=pattern.device)
    return pattern[:, :, t, t - 1].mean(dim=(0, 2))


def induction_scores(pattern: Tensor, batch: RepeatedSpans) -> Tensor:
    """(H,) mean attention from each second-copy position to the position after its match."""
    rows, pos, src = batch.induction_positions()
    return pattern[rows, :, pos, src].mean(dim=0)


def induction_accuracy(logits: Tensor, batch: RepeatedSpans) -> float:
    """Fraction of second-copy positions whose argmax next token is the span's next token."""
    rows, pos, _ = batch.induction_positions()
    return (logits[rows, pos].argmax(-1) == batch.tokens[rows, pos + 1]).float().mean().item()


@dataclass(frozen=True)
class InductionCheck:
    """Accuracy, per-head scores (layer 0: previous token; layer 1: induction), verdict."""

    accuracy: float
    prev_token: list[float]
    induction: list[float]
    ok: bool
    message: str

    @property
    def summary(self) -> dict[str, float]:
        return {
            "accuracy": self.accuracy,
            "max_prev_token_attention": max(self.prev_token),
            "max_induction_attention": max(self.induction),
        }


def _best(scores: list[float]) -> str:
    head = max(range(len(scores)), key=scores.__getitem__)
    return f"head {head} with {scores[head]:.3f}"


@torch.no_grad()
def check_induction(model: InductionTransformer, data: InductionData) -> InductionCheck:
    """Score `model` on CHECK_ROWS sequences drawn from CHECK_SEED (deterministic)."""
    batch = data.sample(CHECK_ROWS, torch.Generator().manual_seed(CHECK_SEED))
    device = next(model.parameters()).device
    tokens = batch.tokens.to(device)
    accuracy = induction_accuracy(model(tokens).cpu(), batch)
    patterns = model.attention_patterns(tokens).cpu()
    prev = prev_token_scores(patterns[0]).tolist()
    ind = induction_scores(patterns[1], batch).tolist()
    problems = []
    if accuracy < MIN_ACCURACY:
        problems.append(
            f"next-token accuracy in second copies {accuracy:.3f} (need >= {MIN_ACCURACY})"
        )
    if max(prev) < MIN_PREV_TOKEN_ATTENTION:
        problems.append(
            f"no previous-token head in layer 0: best {_best(prev)} of attention on t-1 "
            f"(need >= {MIN_PREV_TOKEN_ATTENTION})"
        )
    if max(ind) < MIN_INDUCTION_ATTENTION:
        problems.append(
            f"no induction head in layer 1: best {_best(ind)} of attention on the token after "
            f"the first occurrence (need >= {MIN_INDUCTION_ATTENTION})"
        )
    message = (
        "; ".join(problems) + "; train longer or with another seed"
        if problems
        else f"accuracy {accuracy:.3f}; previous-token {_best(prev)}; induction {_best(ind)}"
    )
    return InductionCheck(accuracy, prev, ind, ok=not problems, message=message)


def validate_induction(
    model: InductionTransformer, data: InductionData, name: str = "induction target"
) -> InductionCheck:
    """`check_induction`, raising `TargetTrainingError` with the reasons if it fails."""
    check = check_induction(model, data)
    if not check.ok:
        raise TargetTrainingError(f"{name}: {check.message}")
    return check
