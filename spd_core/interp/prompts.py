"""The prompts: one asks the explainer for a component's label from its harvest, the other asks
the scorer which snippets a label describes. `TEMPLATE_SHA256` pins their wording (stored with
the labels; `--resume` refuses labels made with other wording)."""

from __future__ import annotations

import hashlib
import json
from collections.abc import Sequence
from typing import Final

from spd_core.harvest.reader import ComponentSummary, Example
from spd_core.interp.scoring import Context

EXPLAINER_SYSTEM: Final = (
    "You name what one component of a neural network's weights responds to, from the texts "
    "where it is active. Be concrete: name tokens, words or contexts."
)
EXPLAINER_USER: Final = """\
A component of layer {module} of a language model is active on {frequency} of all tokens.
Examples where it is most active (the active token in [[double brackets]], its strength first):
{examples}
{token_lines}
Reply with exactly two lines:
Label: <what it responds to, at most 8 words>
Explanation: <one sentence>"""
SCORER_SYSTEM: Final = (
    "You check a label of a neural network component against texts. Answer only with numbers."
)
SCORER_USER: Final = """\
Label: {label}
Each snippet marks one token in [[double brackets]].
{snippets}
Which snippets' marked tokens does the label describe? Reply with their numbers separated by \
commas (for example: 2, 5), or with none."""
TEMPLATE_SHA256: Final = hashlib.sha256(
    json.dumps([EXPLAINER_SYSTEM, EXPLAINER_USER, SCORER_SYSTEM, SCORER_USER]).encode()
).hexdigest()
TOKENS_SHOWN: Final = 6  # tokens per line of token statistics and logit effects

Messages = list[dict[str, str]]


def _one_line(text: str) -> str:
    return text.replace("\n", "⏎")


def marked(before: str, token: str, after: str) -> str:
    """A context with its token in [[double brackets]], on one line."""
    return _one_line(f"{before}[[{token}]]{after}")


def _quoted(token: str) -> str:
    return json.dumps(token, ensure_ascii=False)


def _token_lines(summary: ComponentSummary) -> str:
    lines = []
    by_precision = summary.tokens_by_precision[:TOKENS_SHOWN]
    if by_precision:
        items = ", ".join(f"{_quoted(t.token)} {t.precision:.2f}" for t in by_precision)
        lines.append(
            f"Tokens where it is active most reliably (share of their occurrences): {items}"
        )
    by_recall = summary.tokens_by_recall[:TOKENS_SHOWN]
    if by_recall:
        items = ", ".join(f"{_quoted(t.token)} {t.recall:.0%}" for t in by_recall)
        lines.append(f"Tokens making up most of its activity (share of it): {items}")
    for way, verb in (("up", "raises"), ("down", "lowers")):
        changes = getattr(summary, f"logits_{way}")[:TOKENS_SHOWN]
        if changes:
            items = ", ".join(_quoted(c.token) for c in changes)
            lines.append(f"Next tokens it {verb} the logits of: {items}")
    return "\n".join(lines)


def explainer_messages(summary: ComponentSummary, shown: Sequence[Example]) -> Messages:
    """The chat messages asking for a label of the component `summary` describes, from the
    `shown` examples and its token statistics and logit effects."""
    examples = "\n".join(
        f"{k}. ({e.importance:.2f}) {marked(e.before, e.token, e.after)}"
        for k, e in enumerate(shown, 1)
    )
    user = EXPLAINER_USER.format(
        module=summary.stats.module,
        frequency=f"{summary.stats.firing_frequency:.2%}",
        examples=examples,
        token_lines=_token_lines(summary),
    )
    return [{"role": "system", "content": EXPLAINER_SYSTEM}, {"role": "user", "content": user}]


def scorer_messages(label: str, snippets: Sequence[Context]) -> Messages:
    """The chat messages asking which of the numbered `snippets` the `label` describes."""
    numbered = "\n".join(
        f"{k}. {marked(c.before, c.token, c.after)}" for k, c in enumerate(snippets, 1)
    )
    user = SCORER_USER.format(label=label, snippets=numbered)
    return [{"role": "system", "content": SCORER_SYSTEM}, {"role": "user", "content": user}]
