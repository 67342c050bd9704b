"""What defines a labelling run: the models, which components, and how they are asked."""

from __future__ import annotations

from dataclasses import asdict, dataclass
from typing import Any, Literal

from spd_core.interp.prompts import TEMPLATE_SHA256

Order = Literal["frequency", "mean_ci"]


@dataclass(frozen=True)
class InterpSettings:
    """`modules` (names) and `limit` choose the components (alive ones, most frequent or highest
    mean CI first); the explainer sees `examples_shown` top examples, the scorer `held_out`
    other top examples beside `silent` contexts where the component does not fire (drawn from
    `silent_windows` of the harvest's windows). Every answer gets `attempts` tries."""

    endpoint: str
    explainer_model: str
    scorer_endpoint: str
    scorer_model: str
    modules: tuple[str, ...]
    limit: int | None = None
    order: Order = "frequency"
    examples_shown: int = 10
    held_out: int = 3
    silent: int = 3
    silent_windows: int = 64
    max_tokens: int = 60
    scorer_max_tokens: int = 16
    temperature: float = 0.0
    attempts: int = 3
    seed: int = 0
    prompt_template_sha256: str = TEMPLATE_SHA256

    def __post_init__(self) -> None:
        if self.order not in ("frequency", "mean_ci"):
            raise ValueError(f"order must be frequency or mean_ci, got {self.order!r}")
        if self.limit is not None and self.limit < 1:
            raise ValueError(f"--limit must be >= 1, got {self.limit}")
        for name in ("examples_shown", "attempts", "max_tokens", "scorer_max_tokens"):
            if getattr(self, name) < 1:
                raise ValueError(f"{name} must be >= 1, got {getattr(self, name)}")
        for name in ("held_out", "silent", "silent_windows"):
            if getattr(self, name) < 0:
                raise ValueError(f"{name} must be >= 0, got {getattr(self, name)}")

    def to_json(self) -> dict[str, Any]:
        data = asdict(self)
        data["modules"] = list(self.modules)
        return data
