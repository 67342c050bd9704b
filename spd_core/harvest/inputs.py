"""What a harvest reads: the decomposition's corpus (text models) or its data generator (toys),
fixed in advance and numbered, so that every worker and every resumed run sees the same inputs."""

from __future__ import annotations

import hashlib
import math
from dataclasses import dataclass
from itertools import islice
from typing import Any

import numpy as np
import torch
from torch import Tensor

from spd_core.config import HFTargetConfig
from spd_core.harvest.settings import HarvestSettings
from spd_core.loading import Decomposition
from spd_core.store import FactorStore
from spd_core.text.corpora import passages
from spd_core.text.windows import token_windows


class HarvestInputError(ValueError):
    """The inputs asked for cannot be had (too many for the corpus, --tokens for a toy)."""


@dataclass
class HarvestInputs:
    """Every input of a harvest in global order. `kind`: "text" (windows of a corpus, decoded
    with the decomposition's tokenizer), "tokens" (token ids without a tokenizer, e.g. the
    induction toy) or "vectors" (one feature vector per input). `source` says where they came
    from (stored with the harvest)."""

    inputs: Tensor
    kind: str
    source: dict[str, Any]

    @property
    def n_inputs(self) -> int:
        return self.inputs.shape[0]

    @property
    def tokens_per_input(self) -> int:
        """Positions per input: the window length for sequences, 1 for vectors."""
        return 1 if self.kind == "vectors" else int(self.inputs.shape[1])

    def fingerprint(self) -> str:
        """SHA-256 of the inputs' bytes: a resumed harvest must read the very same inputs."""
        return hashlib.sha256(np.ascontiguousarray(self.inputs.numpy()).tobytes()).hexdigest()

    def shard(self, index: int, settings: HarvestSettings) -> tuple[int, Tensor]:
        """(index of its first input, inputs) of shard `index`."""
        start = index * settings.shard_size
        return start, self.inputs[start : start + settings.shard_size]


def n_shards(n_inputs: int, settings: HarvestSettings) -> int:
    return math.ceil(n_inputs / settings.shard_size)


def _count(tokens: int | None, inputs: int | None, per_input: int | None, default: int) -> int:
    """Inputs to read from --tokens (rounded up to whole inputs) or --inputs."""
    if tokens is not None and inputs is not None:
        raise HarvestInputError("give --tokens or --inputs, not both")
    if tokens is not None:
        if per_input is None:
            raise HarvestInputError(
                "--tokens is for decompositions of models over token sequences; this one reads "
                "one feature vector per input: use --inputs"
            )
        if tokens < 1:
            raise HarvestInputError(f"--tokens must be >= 1, got {tokens}")
        return math.ceil(tokens / per_input)
    n = default if inputs is None else inputs
    if n < 1:
        raise HarvestInputError(f"--inputs must be >= 1, got {n}")
    return n


def text_windows(
    tokenizer: Any, corpus: str, seq_len: int, eval_fraction: float, n_windows: int
) -> Tensor:
    """The first `n_windows` windows of the corpus's train split in corpus order (no shuffle)."""
    texts = (p.text for p in passages(corpus, "train", eval_fraction))
    windows = list(islice(token_windows(tokenizer, texts, seq_len), n_windows))
    if len(windows) < n_windows:
        raise HarvestInputError(
            f"corpus '{corpus}' has only {len(windows)} train windows of {seq_len} tokens "
            f"({len(windows) * seq_len} tokens); ask for at most that many (--inputs "
            f"{len(windows)} or --tokens {len(windows) * seq_len})"
        )
    return torch.tensor(windows, dtype=torch.int64)


def harvest_inputs(
    store: FactorStore,
    decomposition: Decomposition,
    settings: HarvestSettings,
    tokens: int | None = None,
    inputs: int | None = None,
) -> HarvestInputs:
    """The inputs of a harvest of `store`: corpus windows for text models (default 1,024
    windows), generated inputs for toys (default 16,384; shard s drawn from a generator seeded
    with (settings.seed, s), so any shard can be regenerated alone)."""
    target = decomposition.config.target
    if isinstance(target, HFTargetConfig):
        data = target.data
        n = _count(tokens, inputs, data.seq_len, 1024)
        windows = text_windows(
            decomposition.tokenizer, data.corpus, data.seq_len, data.eval_fraction, n
        )
        source = {"corpus": data.corpus, "split": "train", "seq_len": data.seq_len}
        return HarvestInputs(windows, "text", source)
    from spd_core.task.toy import toy_task_from_state

    state = store.target_state()
    if state is None:
        raise HarvestInputError(f"{store.path}: toy store has no target weights under target/")
    task = toy_task_from_state(
        store.target_spec, {k: torch.from_numpy(v) for k, v in state.items()}, torch.device("cpu")
    )
    probe = task.batch_fn(1, torch.Generator().manual_seed(0))
    sequence = not probe.is_floating_point()
    n = _count(tokens, inputs, int(probe.shape[1]) if sequence else None, 16384)
    parts = []
    for shard in range(n_shards(n, settings)):
        size = min(settings.shard_size, n - shard * settings.shard_size)
        gen = torch.Generator().manual_seed(settings.seed * 1_000_003 + shard)
        parts.append(task.batch_fn(size, gen).cpu())
    source = {"generator": str(store.target_spec.get("name")), "seed": settings.seed}
    return HarvestInputs(torch.cat(parts), "tokens" if sequence else "vectors", source)
