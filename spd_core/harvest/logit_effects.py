"""What a component does to the next-token prediction: the change of the logits at an example's
position when that component alone is ablated there, averaged over its top examples.

The ablated forward replaces the component's module by its components plus the delta (W − UᵀV)
with a mask of ones everywhere except 0 for the component at the example's position, so that
everything else reproduces the target; the change is ablated minus target logits at that position.
For a causal model those logits depend only on the tokens up to the position, so each forward
runs on the windows cut after the last position of its batch (rows sorted by position).
"""

from __future__ import annotations

from dataclasses import dataclass

import numpy as np
import torch
from torch import Tensor

from spd_core.harvest.topk import EMPTY_INDEX
from spd_core.model.component_model import ComponentModel
from spd_core.model.masks import ModuleMask


@dataclass
class LogitEffects:
    """Per component (rows of one module, [start, stop)): mean logit change on its examples,
    (n, vocab) float64, and how many examples (0: none, the row is NaN)."""

    start: int
    mean_change: np.ndarray
    n_examples: np.ndarray


@torch.no_grad()
def logit_effects(
    model: ComponentModel,
    inputs: Tensor,
    module: str,
    start: int,
    examples: np.ndarray,
    positions_per_input: int,
    batch_size: int,
) -> LogitEffects:
    """`examples` (n, A): global example indices of components start..start+n-1 of `module`
    (EMPTY_INDEX: none); `inputs` the harvest's inputs (N, seq) token ids of a causal model."""
    C = model.C[module]
    rows = sorted(
        (
            (c, int(e) // positions_per_input, int(e) % positions_per_input)
            for c in range(examples.shape[0])
            for e in examples[c]
            if e != EMPTY_INDEX
        ),
        key=lambda r: (r[2], r[0], r[1]),
    )
    sums: np.ndarray | None = None
    counts = np.zeros(examples.shape[0], np.int64)
    device = next(model.components.parameters()).device
    for at in range(0, len(rows), batch_size):
        chunk = rows[at : at + batch_size]
        comps = torch.tensor([r[0] for r in chunk])
        which = torch.tensor([r[1] for r in chunk])
        pos = torch.tensor([r[2] for r in chunk])
        batch = torch.arange(len(chunk))
        seq = int(pos.max()) + 1
        acts = model.prepare(inputs[which, :seq].to(device))
        mask = torch.ones(len(chunk), seq, C, device=device)
        mask[batch, pos, start + comps] = 0.0
        delta = torch.ones(len(chunk), seq, device=device)
        out = model.masked_forward(acts, {module: ModuleMask(mask=mask, delta_mask=delta)})
        change = (out[batch, pos] - acts.clean.output[batch, pos]).double().cpu().numpy()
        if sums is None:
            sums = np.zeros((examples.shape[0], change.shape[-1]), np.float64)
        np.add.at(sums, comps.numpy(), change)
        np.add.at(counts, comps.numpy(), 1)
    if sums is None:  # no component has an example: no vocabulary seen
        sums = np.zeros((examples.shape[0], 0), np.float64)
    with np.errstate(invalid="ignore", divide="ignore"):
        mean = sums / counts[:, None]
    return LogitEffects(start, mean, counts)


def top_changes(mean_change: np.ndarray, k: int) -> tuple[np.ndarray, ...]:
    """(up ids, up values, down ids, down values), each (n, k): the tokens whose logit rose most
    and fell most (ties: lower token id first); rows without examples, and the slots beyond the
    vocabulary, are -1 and NaN."""
    n, vocab = mean_change.shape
    ids = [np.full((n, k), -1, np.int64) for _ in range(2)]
    values = [np.full((n, k), np.nan, np.float64) for _ in range(2)]
    rows = np.isfinite(mean_change).all(1) & (vocab > 0)
    kk = min(k, vocab)
    sign = {0: -1.0, 1: 1.0}  # up: largest first; down: smallest first
    for which in (0, 1):
        order = np.argsort(sign[which] * mean_change[rows], axis=1, kind="stable")[:, :kk]
        ids[which][rows, :kk] = order
        values[which][rows, :kk] = np.take_along_axis(mean_change[rows], order, 1)
    return ids[0], values[0], ids[1], values[1]
