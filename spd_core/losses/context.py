"""Everything a loss term may need at one training step."""

from __future__ import annotations

from dataclasses import dataclass
from typing import TYPE_CHECKING

import torch
from torch import Tensor

from spd_core.config import Config
from spd_core.model.component_model import CausalImportances, ComponentModel, StepActivations
from spd_core.model.inert_rows import representative_items, restrict

if TYPE_CHECKING:
    from spd_core.losses.persistent_pgd import PersistentPGDRun
    from spd_core.train.parallel.collectives import RankGroup


@dataclass
class LossContext:
    """`acts` and `ci` cover the rows the masked forwards run on. `item_weights` (rows,), when
    set, says how many batch items each row stands for (see `spd_core.model.inert_rows`), and
    `rows` which batch items the rows are. `ranks`: the data-parallel ranks when there are
    several; `persistent`: the run's persistent-PGD sources (training only)."""

    model: ComponentModel
    acts: StepActivations
    ci: CausalImportances
    config: Config
    frac: float  # step / steps
    generator: torch.Generator | None
    world_size: int = 1
    item_weights: Tensor | None = None
    rows: Tensor | None = None
    ranks: RankGroup | None = None
    persistent: PersistentPGDRun | None = None

    @property
    def row_fraction(self) -> float:
        """Rows held / batch items: reconstruction means over the rows × this = over the batch."""
        if self.item_weights is None:
            return 1.0
        return self.item_weights.numel() / float(self.item_weights.sum())


def step_context(
    model: ComponentModel,
    batch: Tensor,
    config: Config,
    frac: float,
    generator: torch.Generator | None,
    world_size: int = 1,
    ranks: RankGroup | None = None,
    persistent: PersistentPGDRun | None = None,
) -> LossContext:
    """Clean pass and causal importances of a batch, keeping only the items a masked forward can
    change plus one that stands for the rest; every loss term has its whole-batch value."""
    acts = model.prepare(batch)
    rows = weights = None
    subset = representative_items(acts.clean)
    if subset is not None:
        rows, weights = subset
        acts = restrict(acts, rows)
    ci = model.causal_importances(acts, config.sampling, generator)
    return LossContext(
        model, acts, ci, config, frac, generator, world_size, weights, rows, ranks, persistent
    )
