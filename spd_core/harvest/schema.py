"""The arrays of `harvest/modules/<module>/`: name -> dimension names and description (the store
format's public contract; docs/store-format.md lists them)."""

from __future__ import annotations

from typing import Final

HARVEST_FORMAT: Final = 1  # the `harvest` group's own format version (attribute `format`)
MODULES_GROUP: Final = "modules"
COMPONENT_CHUNK: Final = 128  # rows per chunk along the component axis

_C = ("component",)
_RANK = ("component", "rank")
_PARTNER = ("component", "partner")

#: name -> (dimension names, description). Every module group holds the "always" arrays; token
#: inputs add "tokens", causal language models "logits".
ALWAYS: Final = {
    "firing_count": (_C, "positions where the component's lower CI exceeds the threshold"),
    "firing_frequency": (_C, "firing_count / positions harvested"),
    "mean_ci_when_firing": (_C, "mean lower CI over the positions where it fires (NaN: never)"),
    "ci_histogram": (
        ("component", "ci_bin"),
        "positions per CI bin: bin b holds floor(CI * n_bins) = b (clamped to [0, n_bins - 1])",
    ),
    "top_ci": (_RANK, "lower CI of the top examples, highest first (NaN: unfilled)"),
    "top_input": (_RANK, "input (text: window) index of each top example (-1: unfilled)"),
    "top_position": (_RANK, "position of each top example in its input (-1: unfilled)"),
    "coact_within_component": (_PARTNER, "top co-firing components of the same module (-1: none)"),
    "coact_within_count": (_PARTNER, "positions where both fire"),
    "coact_across_module": (
        _PARTNER,
        "module (index into the group's `modules`) of each top "
        "co-firing component of another module (-1: none)",
    ),
    "coact_across_component": (_PARTNER, "that component's index in its module (-1: none)"),
    "coact_across_count": (_PARTNER, "positions where both fire"),
}
TOKENS: Final = {
    "top_token": (_RANK, "the token at each top example, decoded"),
    "top_before": (_RANK, "up to 12 tokens before it in its input, decoded"),
    "top_after": (_RANK, "up to 4 tokens after it, decoded"),
    **{
        f"tokens_by_{by}_{field}": (_RANK, f"input tokens it fires on, top by {by}: {what}")
        for by in ("precision", "recall")
        for field, what in (
            ("id", "token id (-1: none)"),
            ("text", "the token, decoded"),
            ("precision", "firings on the token / positions holding the token"),
            ("recall", "firings on the token / all its firings"),
            ("count", "firings on the token"),
        )
    },
}
LOGITS: Final = {
    f"logit_{way}_{field}": (
        _RANK,
        f"next-token logits that {verb} most when it alone is ablated on its top examples: {what}",
    )
    for way, verb in (("up", "rise"), ("down", "fall"))
    for field, what in (
        ("id", "token id (-1: none)"),
        ("text", "the token, decoded"),
        ("change", "mean logit change (ablated - target)"),
    )
}
