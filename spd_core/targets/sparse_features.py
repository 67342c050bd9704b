"""Sparse synthetic features: the inputs of the toy targets, in training and in SPD (spec §7.1)."""

from typing import Literal

import torch
from torch import Tensor

SparseMode = Literal["at_least_zero_active", "exactly_one_active"]


class SparseFeatures:
    """Generator of batches of sparse feature vectors with values uniform in `value_range`.

    `at_least_zero_active`: each feature is independently active with probability
    `feature_probability` (all-zero rows allowed). `exactly_one_active`: one random feature per row.
    """

    def __init__(
        self,
        n_features: int,
        feature_probability: float,
        value_range: tuple[float, float],
        mode: SparseMode = "at_least_zero_active",
    ) -> None:
        lo, hi = value_range
        if n_features < 1:
            raise ValueError(f"n_features must be >= 1, got {n_features}")
        if not 0.0 <= feature_probability <= 1.0:
            raise ValueError(f"feature_probability must be in [0, 1], got {feature_probability}")
        if not lo < hi:
            raise ValueError(f"value_range must satisfy lo < hi, got {value_range}")
        if mode not in ("at_least_zero_active", "exactly_one_active"):
            raise ValueError(f"unknown mode {mode!r}")
        self.n_features = n_features
        self.feature_probability = feature_probability
        self.value_range = (float(lo), float(hi))
        self.mode: SparseMode = mode

    def _uniform(self, shape: tuple[int, ...], generator: torch.Generator | None) -> Tensor:
        lo, hi = self.value_range
        gen_device = generator.device if generator is not None else "cpu"
        return lo + (hi - lo) * torch.rand(shape, generator=generator, device=gen_device)

    def generate(
        self,
        batch_size: int,
        generator: torch.Generator | None = None,
        device: str | torch.device = "cpu",
    ) -> Tensor:
        """A batch `(batch_size, n_features)`, drawn from `generator` (global RNG if None)."""
        shape = (batch_size, self.n_features)
        if self.mode == "at_least_zero_active":
            values = self._uniform(shape, generator)
            rho = torch.rand(shape, generator=generator, device=values.device)
            x = values * (rho < self.feature_probability)
        else:
            values = self._uniform((batch_size,), generator)
            idx = torch.randint(
                self.n_features, (batch_size,), generator=generator, device=values.device
            )
            x = torch.zeros(shape, device=values.device)
            x[torch.arange(batch_size, device=values.device), idx] = values
        return x.to(device)
