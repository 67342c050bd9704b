"""Layout of a factor store (schema 4): constants, paths and the per-module layout record.

Schema 2 adds the `integrity` group (the manifest written at completion) and a CRC32C in every
chunk; schema-1 stores still open but cannot be verified. Schema 3 adds the optional `harvest`
group (dataset-scale component statistics, with its own completeness flag and manifest); a
schema-2 store is a schema-3 store without a harvest. Schema 4 adds the optional `interp` group
(components' labels and scores, made from the harvest, with its own flag and manifest); a
schema-3 store is a schema-4 store without labels."""

from __future__ import annotations

from dataclasses import dataclass
from typing import Final, Literal

SCHEMA_VERSION: Final = 4
FIRST_VERIFIABLE_SCHEMA: Final = 2
FIRST_HARVEST_SCHEMA: Final = 3
FIRST_INTERP_SCHEMA: Final = 4
KINDS: Final = ("linear", "conv1d", "embedding")
FACTOR_NAMES: Final = ("U", "V")
FactorName = Literal["U", "V"]

MODULES: Final = "modules"
CI_FN: Final = "ci_fn"
GLOBAL_CI_FN: Final = "global_ci_fn"  # one CI function for all modules (ci_fn_type global_*)
TARGET: Final = "target"
TRAINING: Final = "training"
INTEGRITY: Final = "integrity"
HARVEST: Final = "harvest"  # schema 3: its own `complete` flag and `integrity` manifest
INTERP: Final = "interp"  # schema 4: labels made from the harvest; its own flag and manifest
PRODUCTS: Final = (HARVEST, INTERP)  # groups written after completion, outside its manifest
STEP: Final = "step"
RECORD_DIM: Final = "record"

#: Root attributes the store owns; callers may not pass these as extra attrs.
RESERVED_ATTRS: Final = frozenset(
    {"spd_schema", "complete", "config", "target_spec", "code_version", "metrics"}
)

FACTOR_DIMS: Final = {"U": ("component", "d_out"), "V": ("component", "d_in")}
FACTOR_DESCRIPTIONS: Final = {
    "U": "row c is subcomponent c's output direction; W ≈ U^T V",
    "V": "row c is subcomponent c's input direction; W ≈ U^T V",
}


@dataclass(frozen=True)
class ModuleLayout:
    """Shape of one decomposed module: C subcomponents of a d_out x d_in weight."""

    kind: str
    C: int
    d_in: int
    d_out: int

    def __post_init__(self) -> None:
        if self.kind not in KINDS:
            raise ValueError(f"kind must be one of {KINDS}, got {self.kind!r}")
        for field in ("C", "d_in", "d_out"):
            value = getattr(self, field)
            if not isinstance(value, int) or isinstance(value, bool) or value < 1:
                raise ValueError(f"{field} must be a positive int, got {value!r}")

    def factor_shape(self, name: FactorName) -> tuple[int, int]:
        """Shape of factor U (C, d_out) or V (C, d_in)."""
        return (self.C, self.d_out) if name == "U" else (self.C, self.d_in)

    def to_attrs(self) -> dict[str, int | str]:
        """Attributes written on the module's group."""
        return {"kind": self.kind, "C": self.C, "d_in": self.d_in, "d_out": self.d_out}


def module_group_path(module: str) -> str:
    """Path of a module's group inside the store."""
    return f"{MODULES}/{module}"


def check_module_name(module: str) -> None:
    """Reject module paths that cannot be a single group name."""
    if not module or "/" in module or module in (".", "..") or module.startswith("__"):
        raise ValueError(
            f"module path {module!r} is not usable as a group name "
            "(empty, contains '/', is '.'/'..', or starts with '__')"
        )
