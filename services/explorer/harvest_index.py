"""What the component table needs of a harvest, read once per harvest: every component's firing
frequency, mean CI, top input tokens by precision and label (or token summary), for the rows,
the token and label searches and the frequency-against-rank plots."""

from __future__ import annotations

from dataclasses import dataclass

import numpy as np

from services.serving.harvest_cache import ServedHarvest
from spd_core.interp import Interpretation

TOP_TOKENS = 5
"""Tokens shown per row (by precision)."""


@dataclass(frozen=True)
class Row:
    module: str
    component: int
    firing_count: int
    firing_frequency: float
    mean_ci_when_firing: float
    top_tokens: tuple[tuple[str, float], ...]
    """(token, precision) of its most precise input tokens."""
    interpretation: Interpretation
    """Its label from `spd autointerp` (if the store has labels) and its token summary."""


def _normal(token: str) -> str:
    return token.strip().casefold()


class HarvestIndex:
    """Every component's row of one harvest, with its rows sorted both ways."""

    def __init__(self, served: ServedHarvest) -> None:
        self.served = served
        self.reader = reader = served.reader
        self.rows: list[Row] = []
        for module in reader.modules:
            count, freq, mean = (
                reader.whole(module, n)
                for n in ("firing_count", "firing_frequency", "mean_ci_when_firing")
            )
            assert count is not None and freq is not None and mean is not None
            texts = reader.whole(module, "tokens_by_precision_text")
            ids = reader.whole(module, "tokens_by_precision_id")
            precision = reader.whole(module, "tokens_by_precision_precision")
            labels = served.interpretations(module)
            for c in range(len(count)):
                tokens: tuple[tuple[str, float], ...] = ()
                if texts is not None and ids is not None and precision is not None:
                    tokens = tuple(
                        (str(texts[c, k]), float(precision[c, k]))
                        for k in range(texts.shape[1])
                        if ids[c, k] >= 0
                    )
                self.rows.append(
                    Row(
                        module,
                        c,
                        int(count[c]),
                        float(freq[c]),
                        float(mean[c]),
                        tokens,
                        labels[c],
                    )
                )
        position = {(r.module, r.component): i for i, r in enumerate(self.rows)}
        self.sorted = {  # the deployment's own ranking (ListComponents' order), built once
            key: [position[r.module, r.component] for r in served.ranked(None, by_mean)]
            for key, by_mean in (("frequency", False), ("mean_ci", True))
        }
        self.has_tokens = any(r.top_tokens for r in self.rows)
        self.has_labels = any(r.interpretation.status for r in self.rows)

    def select(
        self, order: str, module: str | None, token: str | None, label: str | None = None
    ) -> list[Row]:
        """The rows of `module` (or all) whose tokens by precision include `token` and whose
        shown label (the label, else the token summary) contains `label`, ignoring case (each
        filter only when given), highest `order` first (ties in module order, then index)."""
        wanted = _normal(token) if token else None
        needle = label.casefold() if label else None
        return [
            row
            for row in (self.rows[i] for i in self.sorted[order])
            if (module is None or row.module == module)
            and (wanted is None or any(_normal(t) == wanted for t, _ in row.top_tokens))
            and (needle is None or needle in row.interpretation.shown_label.casefold())
        ]

    def rank_frequencies(self, module: str) -> np.ndarray:
        """The module's firing frequencies, highest first."""
        values = [r.firing_frequency for r in self.rows if r.module == module]
        return np.sort(np.asarray(values))[::-1]
