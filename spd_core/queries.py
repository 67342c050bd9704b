"""Questions asked of a trained decomposition on new inputs: causal importances, and the model's
outputs under explicit keep/ablate masks, CI masks or stochastic masks next to the target's."""

from __future__ import annotations

from collections.abc import Mapping, Sequence
from dataclasses import dataclass, field
from typing import Any, Literal

import torch
from torch import Tensor

from spd_core.losses.divergence import (
    OutputLossType,
    per_example_divergence,
    per_position_divergence,
)
from spd_core.model.component_model import ComponentModel
from spd_core.model.masks import ModuleMask, stochastic_masks

MaskMode = Literal["keep", "ablate", "ci", "rounded_ci", "stochastic"]
ImportanceKind = Literal["lower", "upper"]


@dataclass(frozen=True)
class IOSignature:
    """What one input and one output of a target look like (without the batch dimension)."""

    input_shape: tuple[int, ...]
    input_dtype: torch.dtype
    output_shape: tuple[int, ...]
    vocab_size: int | None = None  # token-id inputs: every id must lie in [0, vocab_size)


def io_signature(target_spec: Mapping[str, Any]) -> IOSignature | None:
    """The input/output signature of a stored target; None when the spec does not say."""
    if target_spec.get("kind") != "toy":
        return None
    spec = target_spec["spec"]
    if spec.get("kind") == "induction":  # token ids -> next-token logits
        seq_len, vocab = int(spec["seq_len"]), int(spec["vocab_size"])
        return IOSignature((seq_len,), torch.int64, (seq_len, vocab), vocab_size=vocab)
    n = int(spec["n_features"])
    return IOSignature((n,), torch.float32, (n,))


@torch.no_grad()
def importances(
    model: ComponentModel, x: Tensor, kind: ImportanceKind = "lower"
) -> dict[str, Tensor]:
    """Causal importances (continuous, no sampling noise) of inputs `x`: {module: (N, C)}."""
    ci = model.causal_importances(model.prepare(x))
    return ci.lower if kind == "lower" else ci.upper


@dataclass(frozen=True)
class MaskSpec:
    """Which modules are replaced by their components and how they are masked.

    `modules`: replaced modules (None = all). `components`: for keep/ablate, the listed
    components per replaced module (a replaced module not listed keeps nothing / ablates
    nothing). `use_delta` adds the delta component (weight 1, or uniform per position when
    stochastic). `n_samples`/`seed`: stochastic masks. `rounding_threshold`: rounded_ci.
    """

    mode: MaskMode
    modules: Sequence[str] | None = None
    components: Mapping[str, Sequence[int]] = field(default_factory=dict)
    use_delta: bool = False
    n_samples: int = 1
    seed: int = 0
    rounding_threshold: float = 0.0


@dataclass
class AblationResult:
    """outputs (S, N, …), target (N, …) and divergence (S, N) of each output from the target;
    for token-sequence inputs (N, positions) also the divergence at each position
    (S, N, positions), whose mean over positions is `divergence`."""

    outputs: Tensor
    target: Tensor
    divergence: Tensor
    position_divergence: Tensor | None = None


def explicit_mask(C: int, listed: Sequence[int], keep: bool, device: torch.device) -> Tensor:
    """(C,) mask: 1 on `listed` and 0 elsewhere (keep), or the reverse (ablate)."""
    mask = torch.zeros(C, device=device) if keep else torch.ones(C, device=device)
    if len(listed):
        mask[torch.as_tensor(list(listed), dtype=torch.long, device=device)] = 1.0 if keep else 0.0
    return mask


def _mask_sets(
    model: ComponentModel, x: Tensor, lower: dict[str, Tensor], spec: MaskSpec
) -> list[dict[str, ModuleMask]]:
    """One {module: ModuleMask} per output sample."""
    names = list(spec.modules) if spec.modules is not None else model.module_names
    positions = next(iter(lower.values())).shape[:-1]
    delta = torch.ones(positions, device=x.device) if spec.use_delta else None
    if spec.mode in ("keep", "ablate"):
        keep = spec.mode == "keep"
        return [
            {
                n: ModuleMask(
                    explicit_mask(model.C[n], spec.components.get(n, ()), keep, x.device), delta
                )
                for n in names
            }
        ]
    if spec.mode == "ci":
        return [{n: ModuleMask(lower[n], delta) for n in names}]
    if spec.mode == "rounded_ci":
        return [{n: ModuleMask((lower[n] > spec.rounding_threshold).float(), delta) for n in names}]
    gen = torch.Generator(device=x.device).manual_seed(spec.seed)
    chosen = {n: lower[n] for n in names}
    return [
        stochastic_masks(chosen, "continuous", spec.use_delta, gen) for _ in range(spec.n_samples)
    ]


@torch.no_grad()
def ablated_outputs(
    model: ComponentModel, x: Tensor, spec: MaskSpec, loss_type: OutputLossType
) -> AblationResult:
    """The model's outputs on `x` under the masks of `spec`, the target's output, and the
    per-example divergence (mse or kl) of each masked output from the target's; at each
    position too when `x` is token sequences (N, positions)."""
    acts = model.prepare(x)
    lower = model.causal_importances(acts).lower
    outputs = [model.masked_forward(acts, masks) for masks in _mask_sets(model, x, lower, spec)]
    target = acts.clean.output
    stacked = torch.stack([o.float() for o in outputs])
    divergence = torch.stack([per_example_divergence(o, target, loss_type) for o in outputs])
    by_position = None
    if x.dim() == 2 and not x.is_floating_point():
        by_position = torch.stack([per_position_divergence(o, target, loss_type) for o in outputs])
    return AblationResult(stacked, target.float(), divergence, by_position)
