"""InductionSpec: all that determines the induction target's trained weights."""

from __future__ import annotations

import hashlib
from typing import Literal

from pydantic import BaseModel, ConfigDict, Field, model_validator

from spd_core.targets.induction.data import InductionData


class InductionSpec(BaseModel):
    """An attention-only transformer, its repeated-span data and its training recipe.

    Training: AdamW at `lr` (linear warm-up over `warmup_steps`, then cosine to 0); the relative
    position biases take `rel_bias_lr_mult` × lr and no weight decay (with the common lr they grow
    too slowly for a sharp previous-token head). The loss is the mean of the next-token CE over
    all positions and over the positions inside second copies (`induction_loss_weight` of the
    latter): random fillers alone carry no signal and drown the induction positions, which
    otherwise delays the induction bump beyond thousands of steps.
    """

    model_config = ConfigDict(extra="forbid", frozen=True)

    kind: Literal["induction"] = "induction"
    vocab_size: int = Field(default=64, gt=1)
    seq_len: int = Field(default=64, gt=3)
    d_model: int = Field(default=64, gt=0)
    n_heads: int = Field(default=4, gt=0)
    n_layers: int = Field(default=2, ge=2)
    span_min: int = Field(default=16, ge=2)
    span_max: int = Field(default=28, ge=2)
    seed: int = 0
    train_steps: int = Field(default=2000, gt=0)
    batch_size: int = Field(default=32, gt=0)
    lr: float = Field(default=3e-3, gt=0)
    warmup_steps: int = Field(default=100, ge=0)
    weight_decay: float = Field(default=0.01, ge=0)
    rel_bias_lr_mult: float = Field(default=20.0, gt=0)
    induction_loss_weight: float = Field(default=0.5, ge=0, le=1)

    @model_validator(mode="after")
    def _check(self) -> InductionSpec:
        if self.d_model % self.n_heads:
            raise ValueError(f"d_model {self.d_model} is not divisible by n_heads {self.n_heads}")
        InductionData(self.vocab_size, self.seq_len, self.span_min, self.span_max)  # checks sizes
        return self

    def cache_key(self) -> str:
        """Stable hash of the spec (its JSON), naming the cached weights."""
        return hashlib.sha256(self.model_dump_json().encode()).hexdigest()[:16]
