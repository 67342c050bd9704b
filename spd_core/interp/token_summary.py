"""A component's label that needs no language model: the input tokens that make up most of its
firings, read from the harvest's token statistics."""

from __future__ import annotations

import json
from collections.abc import Sequence

from spd_core.harvest.reader import TokenStat

MAX_TOKENS = 3  # tokens named at most
COVERAGE = 0.5  # name tokens until they hold this share of the firings


def token_summary(firing_count: int, tokens_by_recall: Sequence[TokenStat]) -> str:
    """E.g. `fires on " Mr", " Mrs" (precision 1.00, 78% of firings)`.

    The tokens are the first of `tokens_by_recall` (most firings first) until together they hold
    at least COVERAGE of the firings, at most MAX_TOKENS. Their joint precision is their firings
    over the positions holding them (a token's positions are count / precision); the share is
    the sum of their recalls. "never fires" for a component that never fired; "" when the
    harvest has no token statistics (models over vectors).
    """
    if firing_count == 0:
        return "never fires"
    named: list[TokenStat] = []
    for stat in tokens_by_recall:
        if stat.count < 1 or stat.precision <= 0:
            continue
        named.append(stat)
        if len(named) == MAX_TOKENS or sum(t.recall for t in named) >= COVERAGE:
            break
    if not named:
        return ""
    firings = sum(t.count for t in named)
    positions = sum(t.count / t.precision for t in named)
    share = sum(t.recall for t in named)
    tokens = ", ".join(json.dumps(t.token, ensure_ascii=False) for t in named)
    return f"fires on {tokens} (precision {firings / positions:.2f}, {share:.0%} of firings)"
