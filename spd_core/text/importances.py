"""Causal importances of every token of a text, per decomposed module and component."""

from __future__ import annotations

from dataclasses import dataclass
from typing import Any

import torch
from torch import Tensor

from spd_core.model.component_model import ComponentModel
from spd_core.text.tokens import check_token_ids, encode_text, token_strings


@torch.no_grad()
def token_importances(model: ComponentModel, ids: Tensor) -> dict[str, Tensor]:
    """g_lower for token ids (batch, seq): {module: (batch, seq, C)}."""
    acts = model.prepare(ids)
    return model.causal_importances(acts).lower


@dataclass
class TextImportances:
    """A text's tokens and, per module, their causal importances (seq, C)."""

    ids: list[int]
    tokens: list[str]
    importances: dict[str, Tensor]


def text_importances(
    model: ComponentModel, tokenizer: Any, text: str, target_spec: dict[str, Any]
) -> TextImportances:
    """Tokenize with the decomposition's tokenizer (TextInputError if too long), then CI per token."""
    ids = encode_text(tokenizer, text, target_spec.get("context_length"))
    batch = check_token_ids(ids, target_spec["vocab_size"], target_spec.get("context_length"))
    device = next(model.components.parameters()).device
    ci = token_importances(model, batch.to(device))
    return TextImportances(ids, token_strings(tokenizer, ids), {k: v[0] for k, v in ci.items()})
