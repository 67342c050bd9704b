"""Top-K examples per component under one total order: higher CI first, then the earlier example.

An example is a global index (input × positions per input + position), so the order does not
depend on how inputs were cut into shards or batches: merging partial top-K lists in any grouping
gives the top-K of all examples, exactly.
"""

from __future__ import annotations

import numpy as np
import torch
from torch import Tensor

EMPTY_INDEX = np.iinfo(np.int64).max  # an unfilled slot: sorts after every real example


def empty_top(C: int, k: int) -> tuple[np.ndarray, np.ndarray]:
    """(values, indices) of k unfilled slots per component: -inf and EMPTY_INDEX."""
    return np.full((C, k), -np.inf, np.float32), np.full((C, k), EMPTY_INDEX, np.int64)


def count_true(mask: Tensor) -> Tensor:
    """True entries per row (a uint8 sum: several times faster than summing bools)."""
    return mask.to(torch.uint8).sum(1, dtype=torch.int64)


def batch_top(values: Tensor, k: int, first_index: int) -> tuple[np.ndarray, np.ndarray]:
    """The top min(k, N) examples of each component in one batch. `values` (C, N): N examples
    in global order starting at `first_index`. Ties at the k-th value go to the earliest ones."""
    n = values.shape[1]
    kk = min(k, n)
    top, cols = torch.topk(values, kk, dim=1)
    kth = top[:, -1:]
    at_least = values >= kth
    tied = (count_true(at_least) > kk).nonzero()[:, 0]  # more examples at the k-th value than fit
    if tied.numel():  # there, keep those above it and the earliest at it
        v = values[tied]
        equal = v == kth[tied]
        above = v > kth[tied]
        need = kk - count_true(above).unsqueeze(1)
        chosen = above | (equal & (equal.to(torch.int32).cumsum(1, dtype=torch.int32) <= need))
        cols[tied] = chosen.nonzero()[:, 1].reshape(len(tied), kk)
    return values.gather(1, cols).numpy(), (cols + first_index).numpy()


def merge_top(
    values: np.ndarray, indices: np.ndarray, more_values: np.ndarray, more_indices: np.ndarray
) -> tuple[np.ndarray, np.ndarray]:
    """The top k (= values.shape[1]) of two candidate sets per component, sorted by the order."""
    k = values.shape[1]
    all_values = np.concatenate([values, more_values.astype(np.float32)], axis=1)
    all_indices = np.concatenate([indices, more_indices.astype(np.int64)], axis=1)
    order = np.lexsort((all_indices, -all_values), axis=1)[:, :k]
    return np.take_along_axis(all_values, order, 1), np.take_along_axis(all_indices, order, 1)
