"""Where a component matters: the tokens and contexts of highest causal importance."""

from __future__ import annotations

from dataclasses import dataclass
from typing import Any

import torch
from torch import Tensor

from spd_core.model.component_model import ComponentModel
from spd_core.text.importances import token_importances


@dataclass(frozen=True)
class ComponentContext:
    """One token position: its CI for the component, the token, and text around it."""

    importance: float
    window: int
    position: int
    token: str
    before: str
    after: str


def component_importances(
    model: ComponentModel, windows: Tensor, module: str, component: int, batch_size: int = 8
) -> Tensor:
    """(n_windows, seq) causal importance of one component at every token of the windows."""
    if module not in model.C:
        raise KeyError(f"module '{module}' is not decomposed; modules: {', '.join(model.C)}")
    if not 0 <= component < model.C[module]:
        raise IndexError(f"{module}: component must be in [0, {model.C[module]}), got {component}")
    device = next(model.components.parameters()).device
    rows = [
        token_importances(model, windows[i : i + batch_size].to(device))[module][..., component]
        for i in range(0, len(windows), batch_size)
    ]
    return torch.cat(rows).float().cpu()


def top_contexts(
    model: ComponentModel,
    tokenizer: Any,
    windows: Tensor,
    module: str,
    component: int,
    k: int = 10,
    before: int = 12,
    after: int = 4,
) -> list[ComponentContext]:
    """The k (window, position) pairs where the component's CI is highest (ties: earliest first),
    each with up to `before` / `after` tokens of context from its window."""
    ci = component_importances(model, windows, module, component)
    order = torch.argsort(ci.reshape(-1), descending=True, stable=True)[:k]
    seq = windows.shape[1]
    out = []
    for flat in order.tolist():
        w, p = divmod(flat, seq)
        ids = windows[w].tolist()
        out.append(
            ComponentContext(
                importance=float(ci[w, p]),
                window=w,
                position=p,
                token=tokenizer.decode([ids[p]]),
                before=tokenizer.decode(ids[max(0, p - before) : p]),
                after=tokenizer.decode(ids[p + 1 : p + 1 + after]),
            )
        )
    return out
