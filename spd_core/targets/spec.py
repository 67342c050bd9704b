"""ToyTargetSpec: all that determines a toy target's trained weights (sizes, seed, recipe)."""

import hashlib
from typing import Any, Literal

from pydantic import BaseModel, ConfigDict, Field, model_validator

# Training recipe defaults per kind (spec §7.2 / §7.3); named variants override the rest.
_KIND_DEFAULTS: dict[str, dict[str, Any]] = {
    "tms": {
        "train_steps": 10_000,
        "batch_size": 1024,
        "lr": 5e-3,
        "lr_schedule": "constant",
        "feature_probability": 0.05,
        "value_range": (0.0, 1.0),
    },
    "resid_mlp": {
        "train_steps": 1_000,
        "batch_size": 2048,
        "lr": 3e-3,
        "lr_schedule": "cosine",
        "feature_probability": 0.01,
        "value_range": (-1.0, 1.0),
    },
}
_KIND_SIZES = {"tms": ("n_hidden",), "resid_mlp": ("d_embed", "d_mlp", "n_layers")}
_KIND_ONLY = {
    "tms": ("n_hidden", "n_hidden_layers", "identity_hidden", "bias_init_zero"),
    "resid_mlp": ("d_embed", "d_mlp", "n_layers"),
}


class ToyTargetSpec(BaseModel):
    """A toy target: model kind and sizes, seed and training recipe. Unset recipe fields take the
    defaults of `kind`; sizes of the other kind must stay unset."""

    model_config = ConfigDict(extra="forbid", frozen=True)

    kind: Literal["tms", "resid_mlp"]
    n_features: int = Field(gt=0)
    # TMS
    n_hidden: int | None = Field(default=None, gt=0)
    n_hidden_layers: int = Field(default=0, ge=0)
    identity_hidden: bool = False
    bias_init_zero: bool = False
    # ResidualMLP
    d_embed: int | None = Field(default=None, gt=0)
    d_mlp: int | None = Field(default=None, gt=0)
    n_layers: int | None = Field(default=None, gt=0)
    # Training (AdamW); fields left out take the defaults of `kind` (filled in before validation)
    seed: int = 0
    train_steps: int = Field(gt=0)
    batch_size: int = Field(gt=0)
    lr: float = Field(gt=0)
    lr_schedule: Literal["constant", "cosine"]
    weight_decay: float = Field(default=0.01, ge=0)
    feature_probability: float = Field(gt=0, le=1)
    value_range: tuple[float, float]

    @model_validator(mode="before")
    @classmethod
    def _fill_kind_defaults(cls, data: Any) -> Any:
        if isinstance(data, dict) and data.get("kind") in _KIND_DEFAULTS:
            defaults = _KIND_DEFAULTS[data["kind"]]
            data = {**defaults, **{k: v for k, v in data.items() if v is not None}}
        return data

    @model_validator(mode="after")
    def _check_sizes(self) -> "ToyTargetSpec":
        missing = [f for f in _KIND_SIZES[self.kind] if getattr(self, f) is None]
        if missing:
            raise ValueError(f"kind={self.kind!r} requires {', '.join(missing)}")
        for other, fields in _KIND_ONLY.items():
            if other == self.kind:
                continue
            declared = type(self).model_fields
            wrong = [f for f in fields if getattr(self, f) != declared[f].default]
            if wrong:
                raise ValueError(f"{', '.join(wrong)} only apply to kind={other!r}")
        if self.identity_hidden and self.n_hidden_layers == 0:
            raise ValueError("identity_hidden=True needs n_hidden_layers >= 1")
        lo, hi = self.value_range
        if not lo < hi:
            raise ValueError(f"value_range must satisfy lo < hi, got {self.value_range}")
        return self

    def cache_key(self) -> str:
        """Stable hash of the spec (its JSON), naming the cached weights."""
        return hashlib.sha256(self.model_dump_json().encode()).hexdigest()[:16]
