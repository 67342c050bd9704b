"""Everything a loss term may need at one training step."""

from __future__ import annotations

from dataclasses import dataclass

import torch
from torch import Tensor

from spd_core.component_model import CausalImportances, ComponentModel, StepActivations
from spd_core.config import Config
from spd_core.inert_rows import active_rows, restrict


@dataclass
class LossContext:
    """`acts` and `ci` are what masked forwards run on; `importance_upper` (default `ci.upper`) is
    what importance minimality sees; reconstruction means are multiplied by `row_fraction`, the
    share of the batch's items that `acts` holds (see `spd_core.inert_rows`)."""

    model: ComponentModel
    acts: StepActivations
    ci: CausalImportances
    config: Config
    frac: float  # step / steps
    generator: torch.Generator | None
    world_size: int = 1
    importance_upper: dict[str, Tensor] | None = None
    row_fraction: float = 1.0

    @property
    def ci_upper_for_importance(self) -> dict[str, Tensor]:
        return self.ci.upper if self.importance_upper is None else self.importance_upper


def skipping_inert_rows(
    model: ComponentModel,
    acts: StepActivations,
    ci: CausalImportances,
    config: Config,
    frac: float,
    generator: torch.Generator | None,
    world_size: int = 1,
) -> LossContext:
    """A context whose masked forwards skip the batch items they cannot change; every loss term
    has the value (and gradients) it has on the whole batch."""
    rows = active_rows(acts.clean)
    if rows is None:
        return LossContext(model, acts, ci, config, frac, generator, world_size)
    sub_acts, sub_ci = restrict(acts, ci, rows)
    fraction = rows.numel() / acts.clean.x.shape[0]
    return LossContext(
        model, sub_acts, sub_ci, config, frac, generator, world_size, ci.upper, fraction
    )
