"""Dense, top-k or above-threshold views of a module's causal importances (…, C)."""

from __future__ import annotations

from dataclasses import dataclass
from typing import Literal

import numpy as np
import torch
from torch import Tensor


@dataclass(frozen=True)
class Selection:
    """`mode` dense | top_k | threshold; `k` for top_k, `threshold` for threshold."""

    mode: Literal["dense", "top_k", "threshold"] = "dense"
    k: int = 0
    threshold: float = 0.0


def select(ci: Tensor, selection: Selection) -> tuple[np.ndarray, np.ndarray | None]:
    """(values, indices): dense (…, C) and None; top-k (…, k) values largest first and their
    component indices; threshold: values (nnz,) and coordinates (nnz, ci.dim()) of every entry
    above the threshold, in row-major order."""
    ci = ci.float()
    if selection.mode == "dense":
        return ci.numpy(), None
    if selection.mode == "top_k":
        values, indices = torch.topk(ci, min(selection.k, ci.shape[-1]), dim=-1, sorted=True)
        return values.numpy(), indices.numpy()
    above = ci > selection.threshold
    return ci[above].numpy(), above.nonzero().numpy()
