"""What a harvest measures and how it cuts its inputs: the few numbers that define its result."""

from __future__ import annotations

from dataclasses import asdict, dataclass
from typing import Any

N_BINS = 20
TOP_K = 20
PARTNERS = 10
TOP_TOKENS = 10
ABLATION_EXAMPLES = 4
CONTEXT_BEFORE = 12
CONTEXT_AFTER = 4


@dataclass(frozen=True)
class HarvestSettings:
    """The statistics' definition. `threshold`: a component fires where its lower CI exceeds it
    (the decomposition's `ci_alive_threshold`). `shard_size` inputs (windows, for text) form one
    shard, the unit of work, checkpointing and merging; `batch_size` inputs go through one forward.
    Top examples: `top_k` per component, highest CI first, ties to the earliest (input, position);
    the first `ablation_examples` of them (at most top_k) where it fires are ablated for logit
    effects (causal language models).
    """

    threshold: float
    top_k: int = TOP_K
    n_bins: int = N_BINS
    partners: int = PARTNERS
    top_tokens: int = TOP_TOKENS
    ablation_examples: int = ABLATION_EXAMPLES
    shard_size: int = 256
    batch_size: int = 32
    seed: int = 0

    def __post_init__(self) -> None:
        if not self.threshold >= 0:
            raise ValueError(f"threshold must be >= 0, got {self.threshold}")
        for name in ("top_k", "n_bins", "partners", "top_tokens", "shard_size", "batch_size"):
            value = getattr(self, name)
            if not isinstance(value, int) or isinstance(value, bool) or value < 1:
                raise ValueError(f"{name} must be a positive int, got {value!r}")
        if not isinstance(self.ablation_examples, int) or self.ablation_examples < 0:
            raise ValueError(f"ablation_examples must be >= 0, got {self.ablation_examples!r}")

    def to_json(self) -> dict[str, Any]:
        return asdict(self)

    @classmethod
    def from_json(cls, data: dict[str, Any]) -> HarvestSettings:
        return cls(**data)
