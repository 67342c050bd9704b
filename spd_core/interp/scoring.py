"""Detection scoring: held-out firing examples against non-firing contexts, the balanced
accuracy of the scorer's choice, and the shuffled-label control."""

from __future__ import annotations

import random
from collections.abc import Hashable, Sequence
from dataclasses import dataclass
from typing import TypeVar

T = TypeVar("T")
K = TypeVar("K", bound=Hashable)


@dataclass(frozen=True)
class Context:
    """A token in its text: up to a dozen tokens before it, the token, a few after (decoded)."""

    before: str
    token: str
    after: str


def split_examples(examples: Sequence[T], n_shown: int, n_held_out: int) -> tuple[list[T], list[T]]:
    """(shown to the explainer, held out for scoring): ranks 1, 3, 5, … are held out (at most
    `n_held_out`, and none unless one is left to show), the others shown (at most `n_shown`), so
    both halves hold high-CI examples."""
    held_ranks = set(range(1, len(examples), 2)[:n_held_out]) if len(examples) > 1 else set()
    shown = [e for k, e in enumerate(examples) if k not in held_ranks][:n_shown]
    return shown, [examples[k] for k in sorted(held_ranks)]


def balanced_accuracy(chosen: frozenset[int], positives: frozenset[int], n: int) -> float:
    """(TPR + TNR) / 2 of choosing `chosen` among snippets 0..n-1 whose firing ones are
    `positives`: 0.5 for choosing all or none, 1 for exactly the positives."""
    negatives = frozenset(range(n)) - positives
    if not positives or not negatives:
        raise ValueError("balanced accuracy needs firing and non-firing snippets")
    tpr = len(chosen & positives) / len(positives)
    tnr = len(negatives - chosen) / len(negatives)
    return (tpr + tnr) / 2


def shuffled_snippets(
    firing: Sequence[Context], silent: Sequence[Context], seed: int
) -> tuple[list[Context], frozenset[int]]:
    """The snippets in a seeded random order and the positions of the firing ones."""
    tagged = [(c, True) for c in firing] + [(c, False) for c in silent]
    random.Random(seed).shuffle(tagged)
    return [c for c, _ in tagged], frozenset(k for k, (_, fires) in enumerate(tagged) if fires)


def derangement(keys: Sequence[K], seed: int) -> dict[K, K]:
    """key -> the key whose label it is scored with in the control: a seeded random cycle, so no
    key gets its own label (empty for fewer than two keys)."""
    if len(keys) < 2:
        return {}
    order = list(keys)
    random.Random(seed).shuffle(order)
    return {order[k]: order[(k + 1) % len(order)] for k in range(len(order))}
