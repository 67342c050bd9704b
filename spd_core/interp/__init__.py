"""Labels for components (automated interpretation): a prompt from each component's harvest,
sent to any OpenAI-compatible chat server; the label scored by detection beside a shuffled-label
control; a token summary that needs no language model; all stored under `interp/` in the
factor store, tied to the harvest it was made from. No Ray here: services/commands/autointerp.py
is the command line."""

from spd_core.interp.reader import (
    InterpReader,
    Interpretation,
    NoLabelsError,
    harvest_token_summaries,
    interpretations,
)
from spd_core.interp.settings import InterpSettings
from spd_core.interp.token_summary import token_summary

__all__ = [
    "InterpReader",
    "InterpSettings",
    "Interpretation",
    "NoLabelsError",
    "harvest_token_summaries",
    "interpretations",
    "token_summary",
]
