"""The arrays of `interp/modules/<module>/`: name -> (dimension names, description). Every module
of the harvest has every array, one row per component; components not labelled hold the fill
value ("" , NaN, 0). docs/store-format.md lists them."""

from __future__ import annotations

from typing import Final

INTERP_FORMAT: Final = 1  # the `interp` group's own format version (attribute `format`)
MODULES_GROUP: Final = "modules"
COMPONENT_CHUNK: Final = 1024  # rows per chunk along the component axis

LABELLED: Final = "labelled"
UNPARSED: Final = "unparsed"
STATUSES: Final = (LABELLED, UNPARSED)

_C = ("component",)
ARRAYS: Final = {
    "token_summary": (_C, "the tokens it fires on, from the harvest alone (no language model)"),
    "status": (_C, '"labelled", "unparsed" (every answer malformed), "" (not asked)'),
    "label": (_C, "the explainer's short label (empty unless labelled)"),
    "explanation": (_C, "the explainer's one-sentence explanation"),
    "answer": (_C, "the explainer's last answer, verbatim"),
    "detection_score": (
        _C,
        "balanced accuracy of the scorer telling held-out firing contexts from silent ones "
        "given the label (0.5 is chance; NaN: not scored)",
    ),
    "detection_control": (
        _C,
        "the same with another component's label (the shuffled control; NaN: not scored)",
    ),
    "control_label_of": (_C, 'the component whose label the control used, "module:index"'),
    "explainer_requests": (_C, "chat requests made for its label"),
    "tokens_used": (_C, "prompt + completion tokens of all its requests (label and scores)"),
}
