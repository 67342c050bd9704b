"""Everything a loss term may need at one training step."""

from dataclasses import dataclass

import torch

from spd_core.component_model import CausalImportances, ComponentModel, StepActivations
from spd_core.config import Config


@dataclass
class LossContext:
    model: ComponentModel
    acts: StepActivations
    ci: CausalImportances
    config: Config
    frac: float  # step / steps
    generator: torch.Generator | None
    world_size: int = 1
