"""Reading a store's harvest: refused unless complete, whole (its manifest) and made from the
decomposition the store holds now; one component's summary, or every component's statistics."""

from __future__ import annotations

from dataclasses import dataclass, field
from typing import Any

import numpy as np
import zarr

from spd_core.harvest.schema import MODULES_GROUP
from spd_core.harvest.writer import decomposition_fingerprint
from spd_core.store import FactorStore, StoreError
from spd_core.store.access import guard
from spd_core.store.integrity import compare_listing, damaged_message
from spd_core.store.layout import HARVEST
from spd_core.store.listing import list_objects
from spd_core.store.manifest import read_manifest


class NoHarvestError(StoreError):
    """The store has no complete harvest (none, or one still running or stopped)."""


@dataclass(frozen=True)
class ComponentStats:
    """One component's firing statistics (a row of ListComponents)."""

    module: str
    component: int
    firing_count: int
    firing_frequency: float
    mean_ci_when_firing: float  # NaN: never fires


@dataclass(frozen=True)
class Example:
    importance: float
    input: int
    position: int
    token: str = ""
    before: str = ""
    after: str = ""


@dataclass(frozen=True)
class Partner:
    module: str
    component: int
    count: int


@dataclass(frozen=True)
class TokenStat:
    token_id: int
    token: str
    precision: float
    recall: float
    count: int


@dataclass(frozen=True)
class LogitChange:
    token_id: int
    token: str
    change: float


@dataclass
class ComponentSummary:
    """Everything the harvest holds about one component."""

    stats: ComponentStats
    n_inputs: int
    n_positions: int
    threshold: float
    bin_edges: list[float]
    histogram: list[int]
    top_examples: list[Example]
    coactive_within_module: list[Partner]
    coactive_across_modules: list[Partner]
    tokens_by_precision: list[TokenStat] = field(default_factory=list)
    tokens_by_recall: list[TokenStat] = field(default_factory=list)
    logits_up: list[LogitChange] = field(default_factory=list)
    logits_down: list[LogitChange] = field(default_factory=list)


class HarvestReader:
    """The complete harvest of one store; arrays are read on demand, or all at once by `load`."""

    def __init__(self, store: FactorStore, group: zarr.Group) -> None:
        """Use `HarvestReader.open`."""
        self.store = store
        self._group = group
        self.attrs: dict[str, Any] = group.attrs.asdict()
        self.modules: list[str] = list(self.attrs["modules"])
        self._loaded: dict[tuple[str, str], np.ndarray] | None = None

    @classmethod
    def open(cls, store: FactorStore) -> HarvestReader:
        """StoreError (NoHarvestError when there is none or it is incomplete) unless the store's
        harvest is complete, its files match its manifest and it was made from this
        decomposition."""
        path, root = store.path, store.root
        with guard(path, HARVEST):
            group = root.get(HARVEST)
            attrs = group.attrs.asdict() if isinstance(group, zarr.Group) else None
        if attrs is None:
            raise NoHarvestError(
                f"factor store {path} has no harvest: run `spd harvest {path}` to compute its "
                "components' statistics"
            )
        if attrs.get("complete") is not True:
            raise NoHarvestError(
                f"the harvest of {path} is incomplete (still running, or stopped): finish it "
                f"with `spd harvest {path} --resume`, or start it again with `spd harvest {path}`"
            )
        problems = compare_listing(read_manifest(path, root, HARVEST), list_objects(path, root))
        if problems:
            raise StoreError(damaged_message(path, problems) + f" (or run `spd harvest {path}`)")
        made_from = attrs.get("decomposition_manifest_sha256")
        if made_from is not None and made_from != decomposition_fingerprint(path, root):
            raise NoHarvestError(
                f"the harvest of {path} was made from an earlier version of its decomposition; "
                f"run `spd harvest {path}` again"
            )
        assert isinstance(group, zarr.Group)
        return cls(store, group)

    @property
    def threshold(self) -> float:
        return float(self.attrs["settings"]["threshold"])

    def load(self) -> HarvestReader:
        """Read every array into memory (one read of each chunk), so that later calls read no
        files and the reader may be shared by threads; returns the reader."""
        loaded: dict[tuple[str, str], np.ndarray] = {}
        for module in self.modules:
            with guard(self.store.path, f"{HARVEST}/{MODULES_GROUP}/{module}"):
                for name, arr in self._group[MODULES_GROUP][module].arrays():
                    loaded[(module, name)] = np.asarray(arr[...])
        self._loaded = loaded
        return self

    def _array(self, module: str, name: str) -> zarr.Array | np.ndarray | None:
        if self._loaded is not None:
            return self._loaded.get((module, name))
        node = f"{HARVEST}/{MODULES_GROUP}/{module}/{name}"
        with guard(self.store.path, node):
            arr = self._group[MODULES_GROUP][module].get(name)
        return arr if isinstance(arr, zarr.Array) else None

    def _row(self, module: str, name: str, component: int) -> np.ndarray | None:
        arr = self._array(module, name)
        if arr is None:
            return None
        with guard(self.store.path, f"{HARVEST}/{MODULES_GROUP}/{module}/{name}"):
            return np.asarray(arr[component])

    def whole(self, module: str, name: str) -> np.ndarray | None:
        """A whole per-component array of one module (row c: component c), or None when this
        harvest has no such array (e.g. token statistics of a toy)."""
        arr = self._array(module, name)
        if arr is None:
            return None
        with guard(self.store.path, f"{HARVEST}/{MODULES_GROUP}/{module}/{name}"):
            return np.asarray(arr[...])

    def check_component(self, module: str, component: int) -> None:
        """ValueError naming the module's range when `component` is outside [0, C)."""
        if module not in self.modules:
            raise KeyError(
                f"the harvest has no module {module!r}; modules: {', '.join(self.modules)}"
            )
        C = self.store.modules[module].C
        if not 0 <= component < C:
            raise IndexError(
                f"component {component} is out of range for {module}: C = {C}, so 0..{C - 1}"
            )

    def table(self, module: str | None = None) -> list[ComponentStats]:
        """Every component's statistics (of one module, or all), in module and index order."""
        if module is not None and module not in self.modules:
            raise KeyError(
                f"the harvest has no module {module!r}; modules: {', '.join(self.modules)}"
            )
        rows = []
        for m in [module] if module else self.modules:
            count, freq, mean = (
                np.asarray(self._array(m, n)[...])  # type: ignore[index]
                for n in ("firing_count", "firing_frequency", "mean_ci_when_firing")
            )
            rows.extend(
                ComponentStats(m, c, int(count[c]), float(freq[c]), float(mean[c]))
                for c in range(len(count))
            )
        return rows

    def summary(self, module: str, component: int) -> ComponentSummary:
        """One component's statistics, top examples, partners, token statistics and logit
        effects (the last two only where the harvest has them)."""
        self.check_component(module, component)

        def row(name: str) -> np.ndarray:
            found = self._row(module, name, component)
            assert found is not None, name
            return found

        count = int(row("firing_count"))
        stats = ComponentStats(
            module,
            component,
            count,
            float(row("firing_frequency")),
            float(row("mean_ci_when_firing")),
        )
        ci, inp, pos = row("top_ci"), row("top_input"), row("top_position")
        texts = [self._row(module, n, component) for n in ("top_token", "top_before", "top_after")]
        examples = [
            Example(
                float(ci[k]),
                int(inp[k]),
                int(pos[k]),
                *(str(t[k]) for t in texts if t is not None),
            )
            for k in range(len(ci))
            if inp[k] >= 0
        ]
        within = [
            Partner(module, int(c), int(n))
            for c, n in zip(row("coact_within_component"), row("coact_within_count"), strict=True)
            if c >= 0
        ]
        across = [
            Partner(self.modules[int(m)], int(c), int(n))
            for m, c, n in zip(
                row("coact_across_module"),
                row("coact_across_component"),
                row("coact_across_count"),
                strict=True,
            )
            if c >= 0
        ]
        summary = ComponentSummary(
            stats,
            int(self.attrs["n_inputs"]),
            int(self.attrs["n_positions"]),
            self.threshold,
            list(self.attrs["bin_edges"]),
            [int(v) for v in row("ci_histogram")],
            examples,
            within,
            across,
        )
        if self._array(module, "tokens_by_precision_id") is not None:
            for by in ("precision", "recall"):
                ids, text, p, r, n = (
                    row(f"tokens_by_{by}_{f}")
                    for f in ("id", "text", "precision", "recall", "count")
                )
                stats_list = [
                    TokenStat(int(ids[k]), str(text[k]), float(p[k]), float(r[k]), int(n[k]))
                    for k in range(len(ids))
                    if ids[k] >= 0
                ]
                setattr(summary, f"tokens_by_{by}", stats_list)
        if self._array(module, "logit_up_id") is not None:
            for way in ("up", "down"):
                ids, text, change = (row(f"logit_{way}_{f}") for f in ("id", "text", "change"))
                changes = [
                    LogitChange(int(ids[k]), str(text[k]), float(change[k]))
                    for k in range(len(ids))
                    if ids[k] >= 0
                ]
                setattr(summary, f"logits_{way}", changes)
        return summary
