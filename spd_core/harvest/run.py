"""The steps of a harvest as plain functions (one shard; the logit effects of a block of
components; the merge), and a whole harvest in this process. The Ray job runs the same steps on
data-parallel workers (services/harvest)."""

from __future__ import annotations

from collections.abc import Callable
from typing import Any

import numpy as np
import torch
from torch import Tensor

from spd_core.harvest.accumulator import HarvestPartial
from spd_core.harvest.inputs import HarvestInputs, n_shards
from spd_core.harvest.logit_effects import logit_effects
from spd_core.harvest.settings import HarvestSettings
from spd_core.harvest.summarize import HarvestResult, plain_decode, summarize
from spd_core.harvest.topk import EMPTY_INDEX
from spd_core.loading import Decomposition
from spd_core.model.component_model import ComponentModel

LOGIT_BLOCK = 64  # components per unit of logit-effect work


def empty_partial(model: ComponentModel, settings: HarvestSettings) -> HarvestPartial:
    return HarvestPartial(
        list(model.module_names), [model.C[m] for m in model.module_names], settings
    )


@torch.no_grad()
def harvest_shard(
    model: ComponentModel, inputs: Tensor, first_input: int, settings: HarvestSettings, tokens: bool
) -> HarvestPartial:
    """The statistics of one shard, `settings.batch_size` inputs per forward."""
    partial = empty_partial(model, settings)
    device = next(model.components.parameters()).device
    for at in range(0, inputs.shape[0], settings.batch_size):
        x = inputs[at : at + settings.batch_size]
        acts = model.prepare(x.to(device))
        ci = model.causal_importances(acts).lower
        partial.update({k: v.cpu() for k, v in ci.items()}, first_input + at, x if tokens else None)
    return partial


def ablation_blocks(model: ComponentModel, block: int = LOGIT_BLOCK) -> list[tuple[str, int, int]]:
    """(module, start, stop): the components cut into blocks, the unit of logit-effect work."""
    return [
        (m, start, min(start + block, model.C[m]))
        for m in model.module_names
        for start in range(0, model.C[m], block)
    ]


def block_examples(total: HarvestPartial, module: str, start: int, stop: int) -> np.ndarray:
    """The first `ablation_examples` top examples of components [start, stop) of `module`, those
    where the component fires (others EMPTY_INDEX: a component that never fires is not ablated)."""
    o = total.offsets[module]
    k = total.settings.ablation_examples
    values = total.top_values[o + start : o + stop, :k]
    indices = total.top_indices[o + start : o + stop, :k]
    return np.where(values > total.settings.threshold, indices, EMPTY_INDEX)


def is_causal_lm(decomposition: Decomposition) -> bool:
    """Whether the model predicts the next token (logit effects apply)."""
    spec = decomposition.target_spec
    if spec.get("kind") == "hf":
        return bool(spec.get("causal_lm"))
    return (spec.get("spec") or {}).get("kind") == "induction"


def decoder(
    decomposition: Decomposition, inputs: HarvestInputs
) -> Callable[[list[list[int]]], list[str]] | None:
    """Token id sequences -> texts: the tokenizer's for text models, the ids for token toys."""
    if inputs.kind == "text":
        return text_decoder(decomposition.tokenizer)
    return plain_decode if inputs.kind == "tokens" else None


def text_decoder(tokenizer: Any) -> Callable[[list[list[int]]], list[str]]:
    """`tokenizer.decode` of each sequence; for a fast (Rust) tokenizer, its backend's batch
    decode plus the clean-up `decode` applies, which is what `decode` does, ~50x faster."""
    backend = getattr(tokenizer, "backend_tokenizer", None)
    if backend is None:
        return lambda sequences: [tokenizer.decode(ids) for ids in sequences]
    clean = bool(getattr(tokenizer, "clean_up_tokenization_spaces", False))

    def decode(sequences: list[list[int]]) -> list[str]:
        texts = backend.decode_batch(sequences, skip_special_tokens=False)
        return [tokenizer.clean_up_tokenization(t) for t in texts] if clean else list(texts)

    return decode


def harvest_attrs(
    decomposition: Decomposition,
    inputs: HarvestInputs,
    settings: HarvestSettings,
    total: HarvestPartial,
    extra: dict[str, Any] | None = None,
) -> dict[str, Any]:
    """The `harvest` group's attributes (besides `complete`, set when written)."""
    return {
        "settings": settings.to_json(),
        "input_kind": inputs.kind,
        "source": inputs.source,
        "inputs_sha256": inputs.fingerprint(),
        "n_inputs": total.n_inputs,
        "positions_per_input": total.positions_per_input,
        "n_positions": total.n_positions,
        "modules": list(total.modules),
        "C": list(total.sizes),
        "bin_edges": [i / settings.n_bins for i in range(settings.n_bins + 1)],
        "logit_effects": is_causal_lm(decomposition),
        **(extra or {}),
    }


def harvest(
    decomposition: Decomposition,
    inputs: HarvestInputs,
    settings: HarvestSettings,
    progress: Callable[[int, int], None] | None = None,
) -> HarvestResult:
    """A whole harvest in this process: the shards in order, merged, then the logit effects."""
    model = decomposition.model
    tokens = inputs.kind != "vectors"
    total = empty_partial(model, settings)
    for shard in range(n_shards(inputs.n_inputs, settings)):
        first, x = inputs.shard(shard, settings)
        total.merge(harvest_shard(model, x, first, settings, tokens))
        if progress is not None:
            progress(total.n_inputs, inputs.n_inputs)
    changes = None
    if is_causal_lm(decomposition) and settings.ablation_examples:
        changes = logit_changes(model, inputs, total, ablation_blocks(model))
    arrays = summarize(total, inputs, changes, decoder(decomposition, inputs))
    return HarvestResult(arrays, harvest_attrs(decomposition, inputs, settings, total))


def logit_changes(
    model: ComponentModel,
    inputs: HarvestInputs,
    total: HarvestPartial,
    blocks: list[tuple[str, int, int]],
) -> dict[str, np.ndarray]:
    """{module: (C, vocab) mean logit change} from the logit effects of every block."""
    found = {
        (m, a): logit_effects(
            model,
            inputs.inputs,
            m,
            a,
            block_examples(total, m, a, b),
            total.positions_per_input,
            total.settings.batch_size,
        ).mean_change
        for m, a, b in blocks
    }
    return assemble_changes(found, model)


def assemble_changes(
    found: dict[tuple[str, int], np.ndarray], model: ComponentModel
) -> dict[str, np.ndarray]:
    """Blocks (module, start) -> rows, stacked per module (blocks without examples have no
    vocabulary columns: they become NaN rows of the module's width)."""
    vocab = max((v.shape[1] for v in found.values()), default=0)
    out = {}
    for m in model.module_names:
        parts = [found[key] for key in sorted(k for k in found if k[0] == m)]
        out[m] = np.concatenate(
            [p if p.shape[1] == vocab else np.full((p.shape[0], vocab), np.nan) for p in parts]
        )
    return out
