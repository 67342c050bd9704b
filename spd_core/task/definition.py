"""What a decomposition runs on: a frozen target, a batch source, and how to rebuild the target."""

from __future__ import annotations

from collections.abc import Callable
from dataclasses import dataclass
from typing import Any

import torch
from torch import Tensor, nn

from spd_core.targets.weights import TargetWeights

BatchFn = Callable[[int, torch.Generator | None], Tensor]


@dataclass
class DecompositionTask:
    """`batch_fn(batch_size, generator)` yields input batches on the target's device.

    `target_spec` (JSON-able) says how to rebuild the target; `target_state`, when given, is stored
    with the factors so the store is self-contained; `n_features` enables one-hot CI metrics.
    `eval_batch_fn` draws evaluation batches from held-out data (default: `batch_fn`);
    `causal_lm` adds next-token CE/KL under masks to the evaluation. A batch source that ignores
    the generator (a text stream) gives `skip_batches(n_batches, batch_size)`, which moves it past
    the batches a resumed run already trained on. A target built with its parameters on the meta
    device (for target sharding) reads them from `target_weights`.
    """

    target: nn.Module
    batch_fn: BatchFn
    target_spec: dict[str, Any]
    target_state: dict[str, Tensor] | None = None
    n_features: int | None = None
    eval_batch_fn: BatchFn | None = None
    causal_lm: bool = False
    skip_batches: Callable[[int, int], None] | None = None
    target_weights: TargetWeights | None = None
