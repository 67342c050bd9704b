"""Reading a store's labels: refused unless complete, whole (its manifest) and made from the
harvest the store holds now. Without labels, every harvested component still has its token
summary, computed from the harvest (`token_summary`)."""

from __future__ import annotations

import math
from dataclasses import dataclass

import numpy as np
import zarr

from spd_core.harvest.reader import HarvestReader, TokenStat
from spd_core.interp.schema import MODULES_GROUP
from spd_core.interp.token_summary import token_summary
from spd_core.interp.writer import harvest_fingerprint
from spd_core.store import StoreError
from spd_core.store.access import guard
from spd_core.store.integrity import compare_listing, damaged_message
from spd_core.store.layout import INTERP
from spd_core.store.listing import list_objects
from spd_core.store.manifest import read_manifest


class NoLabelsError(StoreError):
    """The store has no complete labels (none, a run still going or stopped, or labels of an
    earlier harvest)."""


@dataclass(frozen=True)
class Interpretation:
    """What is known of one component beyond its statistics. `status` "" (not labelled: only
    the token summary), "labelled" or "unparsed"; scores NaN when not scored."""

    token_summary: str
    status: str = ""
    label: str = ""
    explanation: str = ""
    detection_score: float = math.nan
    detection_control: float = math.nan
    explainer_model: str = ""

    @property
    def shown_label(self) -> str:
        """The label, or the token summary where there is none."""
        return self.label or self.token_summary


class InterpReader:
    """The complete labels of one store; arrays are read whole per module, on demand."""

    def __init__(self, harvest: HarvestReader, group: zarr.Group) -> None:
        """Use `InterpReader.open`."""
        self.harvest = harvest
        self._group = group
        self.attrs = group.attrs.asdict()
        self._cache: dict[str, dict[str, np.ndarray]] = {}

    @classmethod
    def open(cls, harvest: HarvestReader) -> InterpReader:
        """NoLabelsError when the store has no labels, incomplete ones or ones made from
        another harvest; StoreError when their files do not match their manifest."""
        store = harvest.store
        path, root = store.path, store.root
        with guard(path, INTERP):
            group = root.get(INTERP)
            attrs = group.attrs.asdict() if isinstance(group, zarr.Group) else None
        if attrs is None:
            raise NoLabelsError(
                f"factor store {path} has no labels: run `spd autointerp {path} --endpoint URL "
                "--model NAME`"
            )
        if attrs.get("complete") is not True:
            raise NoLabelsError(
                f"the labels of {path} are incomplete (still running, or stopped): finish them "
                f"with `spd autointerp {path} --resume` and the same options"
            )
        problems = compare_listing(read_manifest(path, root, INTERP), list_objects(path, root))
        if problems:
            raise StoreError(damaged_message(path, problems) + f" (or run `spd autointerp {path}`)")
        if attrs.get("harvest_manifest_sha256") != harvest_fingerprint(path, root):
            raise NoLabelsError(
                f"the labels of {path} were made from an earlier harvest; run `spd autointerp "
                f"{path}` again"
            )
        assert isinstance(group, zarr.Group)
        return cls(harvest, group)

    def _arrays(self, module: str) -> dict[str, np.ndarray]:
        if module not in self._cache:
            node = f"{INTERP}/{MODULES_GROUP}/{module}"
            with guard(self.harvest.store.path, node):
                group = self._group[MODULES_GROUP][module]
                self._cache[module] = {n: np.asarray(a[...]) for n, a in group.arrays()}
        return self._cache[module]

    def interpretation(self, module: str, component: int) -> Interpretation:
        a = self._arrays(module)
        return Interpretation(
            token_summary=str(a["token_summary"][component]),
            status=str(a["status"][component]),
            label=str(a["label"][component]),
            explanation=str(a["explanation"][component]),
            detection_score=float(a["detection_score"][component]),
            detection_control=float(a["detection_control"][component]),
            explainer_model=str(self.attrs.get("explainer_model", "")),
        )


def interpretations(harvest: HarvestReader, module: str) -> list[Interpretation]:
    """Every component's interpretation in `module`: from the labels when the store has complete
    ones, else the token summary alone (computed from the harvest)."""
    try:
        labels: InterpReader | None = InterpReader.open(harvest)
    except NoLabelsError:
        labels = None
    if labels is not None:
        return [labels.interpretation(module, c) for c in range(harvest.store.modules[module].C)]
    return [Interpretation(s) for s in harvest_token_summaries(harvest, module)]


def harvest_token_summaries(harvest: HarvestReader, module: str) -> list[str]:
    """Every component's token summary in `module`, from the harvest alone (whole arrays)."""
    count = harvest.whole(module, "firing_count")
    assert count is not None
    fields = ("id", "text", "precision", "recall", "count")
    by_recall = [harvest.whole(module, f"tokens_by_recall_{f}") for f in fields]
    if any(a is None for a in by_recall):
        return [token_summary(int(n), []) for n in count]
    ids, text, precision, recall, n = by_recall
    return [
        token_summary(
            int(count[c]),
            [
                TokenStat(
                    int(ids[c, k]),
                    str(text[c, k]),
                    float(precision[c, k]),
                    float(recall[c, k]),
                    int(n[c, k]),
                )
                for k in range(ids.shape[1])
                if ids[c, k] >= 0
            ],
        )
        for c in range(len(count))
    ]
