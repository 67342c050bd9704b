"""Distance of a CI pattern on one-hot inputs from the identity or the dense ground truth."""

from __future__ import annotations

import numpy as np
import torch
from scipy.optimize import linear_sum_assignment
from torch import Tensor


def identity_permutation(ci: Tensor) -> Tensor:
    """Column order that puts the largest CI of each input on the diagonal (Hungarian)."""
    cost = -ci.detach().float().cpu().numpy()
    rows, cols = linear_sum_assignment(cost)
    order = list(cols[np.argsort(rows)])
    rest = [c for c in range(ci.shape[1]) if c not in set(order)]
    return torch.tensor(order + rest, dtype=torch.long)


def dense_permutation(ci: Tensor) -> Tensor:
    """Columns sorted by total CI mass, largest first."""
    return ci.detach().float().sum(0).argsort(descending=True).cpu()


def _identity_misses(ci: Tensor, tol: float) -> Tensor:
    """(n_inputs, C) bool, after the best permutation: diagonal entries < 1 − tol and
    off-diagonal entries > tol."""
    n = ci.shape[0]
    p = ci[:, identity_permutation(ci)]
    misses = p > tol
    eye = torch.arange(n)
    misses[eye, eye] = p[eye, eye] < 1 - tol
    return misses


def identity_ci_error(ci: Tensor, tol: float = 0.1) -> int:
    """ci (n_inputs, C). Count off-diagonal entries > tol and diagonal entries < 1 − tol after
    the best permutation; 0 means one dedicated, fully important component per input."""
    return int(_identity_misses(ci, tol).sum().item())


def identity_broken_inputs(ci: Tensor, tol: float = 0.1) -> list[int]:
    """ci (n_inputs, C). The inputs whose row holds an entry `identity_ci_error` counts."""
    return _identity_misses(ci, tol).any(1).nonzero().flatten().tolist()


def dense_ci_error(ci: Tensor, k: int, tol: float = 0.1) -> int:
    """ci (n_inputs, C). The k heaviest columns should be important (≥ 1 − tol) on every input,
    the rest nowhere (≤ tol): count columns among the first k that are important on no input,
    plus entries > tol in the remaining columns."""
    p = ci[:, dense_permutation(ci)]
    dense = p[:, :k]
    missing = (1 - (dense >= 1 - tol).sum(0)).clamp(min=0).sum()
    stray = (p[:, k:] > tol).sum()
    return int((missing + stray).item())
