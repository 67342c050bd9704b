"""Reading the language model's answers: a label (and explanation) from the explainer, the
numbers of the matching snippets from the scorer. A malformed answer gives None (the caller asks
again, then records it as unparsed)."""

from __future__ import annotations

import re
from dataclasses import dataclass

MAX_LABEL_CHARS = 80
MAX_LABEL_WORDS = 12
# a first line taken as the label without `Label:` keeps to the prompt's "at most 8 words": a
# longer one is a sentence restating the prompt ("The neural network is active on 19.53% of all
# tokens", SmolLM2-135M's habit), not a label
MAX_UNMARKED_LABEL_WORDS = 8
MAX_EXPLANATION_CHARS = 500
_FIELD = re.compile(r"^[\s*#>_-]*(label|explanation)[\s*_]*[:：][\s*_]*(.*)$", re.IGNORECASE)
_NUMBER = re.compile(r"\b\d+\b")
_NONE = re.compile(r"\bnone\b", re.IGNORECASE)
# "1. The cat sat …": a numbered line of text restates the snippets, it does not choose among them
_RESTATED = re.compile(r"^\s*\d+\s*[.)]\s+[^\d\s,]", re.MULTILINE)


@dataclass(frozen=True)
class ParsedLabel:
    label: str
    explanation: str


_QUOTES = {'"': '"', "'": "'", "“": "”", "`": "`"}


def _clean(text: str) -> str:
    """Without markdown emphasis, one pair of enclosing quotes and a final period."""
    text = text.strip().strip("*_").strip()
    if len(text) >= 2 and _QUOTES.get(text[0]) == text[-1]:
        text = text[1:-1].strip()
    return text.rstrip(".").strip()


def _usable(label: str) -> bool:
    """Short enough, and not a copied example (those hold the firing-token marker `[[`)."""
    return (
        0 < len(label) <= MAX_LABEL_CHARS
        and len(label.split()) <= MAX_LABEL_WORDS
        and "[[" not in label
    )


def parse_label(answer: str) -> ParsedLabel | None:
    """`Label: …` and `Explanation: …` lines (any case, markdown around them allowed); without a
    `Label:` line, a first line of at most MAX_UNMARKED_LABEL_WORDS words is the label and the
    rest the explanation. None when there is no label, it is longer than MAX_LABEL_WORDS words
    / MAX_LABEL_CHARS characters, or it holds a marked token (an example copied)."""
    lines = [line.strip() for line in answer.strip().splitlines() if line.strip()]
    fields: dict[str, str] = {}
    rest: list[str] = []
    for line in lines:
        match = _FIELD.match(line)
        if match and match.group(1).lower() not in fields:
            fields[match.group(1).lower()] = _clean(match.group(2))
        else:
            rest.append(line)
    if "label" in fields:
        label = fields["label"]
        explanation = fields.get("explanation") or " ".join(rest)
    elif lines and len(lines[0].split()) <= MAX_UNMARKED_LABEL_WORDS:
        label, explanation = _clean(lines[0]), fields.get("explanation") or " ".join(lines[1:])
    else:
        return None
    if not _usable(label):
        return None
    return ParsedLabel(label, _clean(explanation)[:MAX_EXPLANATION_CHARS])


def parse_selection(answer: str, n: int) -> frozenset[int] | None:
    """The snippet numbers (1..n) the scorer named, 0-based; an empty set for "none"; None when
    the answer names no snippet in range and does not say none, or restates the snippets as a
    numbered list (a small model's habit: its numbers are the list's, not a choice)."""
    if _RESTATED.search(answer):
        return None
    numbers = {int(m) for m in _NUMBER.findall(answer)}
    chosen = frozenset(k - 1 for k in numbers if 1 <= k <= n)
    if chosen:
        return chosen
    return frozenset() if _NONE.search(answer) else None
