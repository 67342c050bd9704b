"""Toy target models of the SPD paper (TMS, ResidualMLP), their data and deterministic training."""

from spd_core.targets.registry import (
    TOY_TARGETS,
    ToyTarget,
    ToyTargetSpec,
    load_toy_target,
    toy_target_from_state,
    toy_target_spec,
)
from spd_core.targets.resid_mlp import ResidualMLP
from spd_core.targets.sparse_features import SparseFeatures
from spd_core.targets.tms import TMSModel
from spd_core.targets.validation import TargetTrainingError

__all__ = [
    "TOY_TARGETS",
    "ResidualMLP",
    "SparseFeatures",
    "TMSModel",
    "TargetTrainingError",
    "ToyTarget",
    "ToyTargetSpec",
    "load_toy_target",
    "toy_target_from_state",
    "toy_target_spec",
]
