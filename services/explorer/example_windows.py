"""The windows a text harvest read, rebuilt from its corpus so that a component page can show
the component's CI on every token of each top example's window. A harvest numbers its inputs
as the first windows of the corpus's train split in order (spd_core.harvest.inputs), so window i
is the same tokens the harvest saw."""

from __future__ import annotations

import threading
from typing import Any

from torch import Tensor

from spd_core.harvest.inputs import text_windows


class ExampleWindows:
    """Windows per decomposition, tokenized on first need and kept (grown, never shrunk)."""

    def __init__(self) -> None:
        self._windows: dict[str, Tensor] = {}
        self._lock = threading.Lock()

    def get(
        self,
        name: str,
        tokenizer: Any,
        source: dict[str, Any],
        eval_fraction: float,
        indices: list[int],
        n_inputs: int,
    ) -> dict[int, list[int]]:
        """{window index: token ids} for `indices` (of a harvest of `n_inputs` windows)."""
        need = min(max(indices, default=-1) + 1, n_inputs)
        with self._lock:
            have = self._windows.get(name)
            if have is None or len(have) < need:
                grow = min(max(need, 2 * (0 if have is None else len(have))), n_inputs)
                have = text_windows(
                    tokenizer, str(source["corpus"]), int(source["seq_len"]), eval_fraction, grow
                )
                self._windows[name] = have
        return {i: have[i].tolist() for i in indices if 0 <= i < len(have)}
