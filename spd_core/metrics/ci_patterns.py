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


def identity_ci_error(ci: Tensor, tol: float = 0.1) -> int:
    """ci (n_inputs, C). Count off-diagonal entries > tol and diagonal entries < 1 − tol after
    the best permutation; 0 means one dedicated, fully important component per input."""
    n = ci.shape[0]
    p = ci[:, identity_permutation(ci)]
    diag = torch.diagonal(p[:, :n])
    off = p.clone()
    off[torch.arange(n), torch.arange(n)] = 0
    return int((off > tol).sum().item() + (diag < 1 - tol).sum().item())


def dense_ci_error(ci: Tensor, k: int, tol: float = 0.1) -> int:
    """ci (n_inputs, C). The k heaviest columns should be important (≥ 1 − tol) on every input,
    the rest nowhere (≤ tol): count columns among the first k that are important on no input,
    plus entries > tol in the remaining columns."""
    p = ci[:, dense_permutation(ci)]
    dense = p[:, :k]
    missing = (1 - (dense >= 1 - tol).sum(0)).clamp(min=0).sum()
    stray = (p[:, k:] > tol).sum()
    return int((missing + stray).item())
