"""The note an exported edit carries: what was removed from which store, as JSON and as text."""

from __future__ import annotations

import json
from dataclasses import asdict, dataclass, field
from datetime import UTC, datetime
from pathlib import Path
from typing import Any

from spd_core.edit.weights import RemovedComponents
from spd_core.store.version import default_code_version

NOTE_JSON = "spd_edit.json"
NOTE_TEXT = "SPD_EDIT.md"
FORMAT = "spd-edit/1"


@dataclass(frozen=True)
class EditNote:
    """`store`: where the decomposition was read; `target`: the model it decomposed (a Hugging
    Face name or folder, or a toy target's kind); `format`: how the folder is laid out."""

    store: str
    store_code_version: str
    target: str
    target_format: str
    removed: list[RemovedComponents]
    spd_version: str = field(default_factory=default_code_version)
    created: str = field(
        default_factory=lambda: datetime.now(UTC).replace(microsecond=0).isoformat()
    )

    def to_json(self) -> dict[str, Any]:
        selection = {r.module: r.components for r in self.removed}
        return {
            "format": FORMAT,
            "store": self.store,
            "store_code_version": self.store_code_version,
            "spd_version": self.spd_version,
            "created": self.created,
            "target": self.target,
            "target_format": self.target_format,
            "removed": [asdict(r) for r in self.removed],
            "equals": {
                "rpc": "Ablate",
                "mode": "MASK_MODE_ABLATE",
                "use_delta": True,
                "components": selection,
            },
        }

    def to_text(self) -> str:
        fmt = (
            "a Hugging Face folder (`from_pretrained`)"
            if self.target_format == "huggingface"
            else "a toy target's weights laid out as a store's `target/` group "
            "(`spd_core.edit.load_edited_toy_target`)"
        )
        lines = [
            "# An edited model written by `spd export`",
            "",
            f"Target `{self.target}` with the components below subtracted from its weights",
            "(W - the sum of u_c v_c^T over them), read from the decomposition",
            f"`{self.store}` (code version {self.store_code_version}); written {self.created}",
            f"by {self.spd_version}. Its outputs equal spd's `Ablate` in `MASK_MODE_ABLATE` with",
            f"`use_delta` on the same components. Format: {fmt}.",
            "",
            "| module | kind | components removed (of C) | ‖u_c v_c^T‖ each | ‖W‖ | ‖removed‖ |",
            "|---|---|---|---|---|---|",
        ]
        for r in self.removed:
            norms = ", ".join(f"{n:.4g}" for n in r.component_norms)
            comps = ", ".join(map(str, r.components))
            lines.append(
                f"| {r.module} | {r.kind} | {comps} (of {r.C}) | {norms} | "
                f"{r.weight_norm:.4g} | {r.removed_norm:.4g} |"
            )
        untied = [r.module for r in self.removed if r.untied]
        if untied:
            lines += [
                "",
                f"{', '.join(untied)} shared its weight with another module (tied); the edit "
                "gave it its own copy, so the other module keeps the original weight.",
            ]
        lines += ["", f"The same, machine-readable: `{NOTE_JSON}`. Norms are Frobenius norms.", ""]
        return "\n".join(lines)

    def write(self, folder: Path) -> None:
        (folder / NOTE_JSON).write_text(json.dumps(self.to_json(), indent=2) + "\n")
        (folder / NOTE_TEXT).write_text(self.to_text())
