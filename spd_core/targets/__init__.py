"""Targets spd trains itself: the toy models of the SPD paper (TMS, ResidualMLP), the induction
transformer, and the tiny Llamas (`spd_core.targets.tiny_llama`); data and deterministic training."""

from spd_core.targets.induction.model import InductionTransformer
from spd_core.targets.induction.spec import InductionSpec
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
    "InductionSpec",
    "InductionTransformer",
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
