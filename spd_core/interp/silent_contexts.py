"""Contexts where a component does not fire, for the detection score's negatives: the
decomposition is run on a seeded sample of the harvest's own windows, and each component gets
positions where its lower CI is at or below the harvest's threshold (so they are truly silent,
not merely other components' examples)."""

from __future__ import annotations

from collections.abc import Iterable

import numpy as np
import torch

from spd_core.config import HFTargetConfig
from spd_core.harvest.inputs import HarvestInputs, text_windows
from spd_core.harvest.reader import HarvestReader
from spd_core.harvest.run import text_decoder
from spd_core.harvest.settings import CONTEXT_AFTER, CONTEXT_BEFORE
from spd_core.interp.scoring import Context
from spd_core.loading import Decomposition
from spd_core.text.importances import token_importances

BATCH = 8  # windows per forward


class SilentContextError(ValueError):
    """The harvest's windows cannot be rebuilt (the corpus changed since the harvest)."""


def harvest_windows(decomposition: Decomposition, reader: HarvestReader) -> torch.Tensor:
    """The harvest's windows (n_inputs, seq_len), rebuilt from its recorded corpus and checked
    against its recorded fingerprint."""
    target = decomposition.config.target
    assert isinstance(target, HFTargetConfig)
    source = reader.attrs["source"]
    windows = text_windows(
        decomposition.tokenizer,
        source["corpus"],
        int(source["seq_len"]),
        target.data.eval_fraction,
        int(reader.attrs["n_inputs"]),
    )
    if HarvestInputs(windows, "text", source).fingerprint() != reader.attrs["inputs_sha256"]:
        raise SilentContextError(
            f"the corpus '{source['corpus']}' is not the one {reader.store.path} was harvested "
            "from (its windows' fingerprint differs); run `spd harvest` again"
        )
    return windows


def silent_contexts(
    decomposition: Decomposition,
    reader: HarvestReader,
    components: Iterable[tuple[str, int]],
    per_component: int,
    n_windows: int,
    seed: int,
) -> dict[tuple[str, int], list[Context]]:
    """For each (module, component), `per_component` contexts (seeded choice) from `n_windows`
    of the harvest's windows where it does not fire; fewer if it fires nearly everywhere."""
    wanted = list(components)
    if not wanted:
        return {}
    windows = harvest_windows(decomposition, reader)
    rng = np.random.default_rng(seed)
    chosen = np.sort(rng.permutation(len(windows))[: min(n_windows, len(windows))])
    sample = windows[chosen]
    modules = sorted({m for m, _ in wanted})
    silent = {m: [] for m in modules}  # per module: (windows, seq, C) bool, per batch
    with torch.no_grad():
        for start in range(0, len(sample), BATCH):
            ci = token_importances(decomposition.model, sample[start : start + BATCH])
            for m in modules:
                silent[m].append((ci[m] <= reader.threshold).cpu().numpy())
    quiet = {m: np.concatenate(parts) for m, parts in silent.items()}
    decode = text_decoder(decomposition.tokenizer)
    ids = sample.tolist()
    out: dict[tuple[str, int], list[Context]] = {}
    for key in wanted:
        module, c = key
        where = np.argwhere(quiet[module][:, :, c])  # (k, 2): window, position
        picked = where[rng.permutation(len(where))[:per_component]]
        pieces = []
        for w, p in picked.tolist():
            row = ids[w]
            pieces += [
                row[max(0, p - CONTEXT_BEFORE) : p],
                [row[p]],
                row[p + 1 : p + 1 + CONTEXT_AFTER],
            ]
        texts = decode(pieces) if pieces else []
        out[key] = [Context(*texts[k : k + 3]) for k in range(0, len(texts), 3)]
    return out
