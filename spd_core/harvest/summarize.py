"""From merged statistics to the stored arrays: frequencies, means, top examples with contexts,
top co-firing partners and token statistics per module."""

from __future__ import annotations

from collections.abc import Callable
from dataclasses import dataclass, field
from typing import Any

import numpy as np

from spd_core.harvest.accumulator import TOKEN_BITS, HarvestPartial
from spd_core.harvest.inputs import HarvestInputs
from spd_core.harvest.logit_effects import top_changes
from spd_core.harvest.settings import CONTEXT_AFTER, CONTEXT_BEFORE
from spd_core.harvest.topk import EMPTY_INDEX

Decode = Callable[[list[list[int]]], list[str]]  # token id sequences -> their texts, in one call


@dataclass
class HarvestResult:
    """Everything a harvest stores: per module, array name -> array (C rows); and the `harvest`
    group's attributes."""

    modules: dict[str, dict[str, np.ndarray]]
    attrs: dict[str, Any] = field(default_factory=dict)


def plain_decode(sequences: list[list[int]]) -> list[str]:
    """Token ids without a tokenizer (the induction toy): the ids, space-separated."""
    return [" ".join(str(i) for i in ids) for ids in sequences]


def _texts(ids: np.ndarray, decode: Decode) -> np.ndarray:
    """Each token id of `ids` decoded ("" for -1), in the shape of `ids`."""
    flat = ids.reshape(-1).tolist()
    found = iter(decode([[i] for i in flat if i >= 0]))
    return _strings([next(found) if i >= 0 else "" for i in flat], ids.shape)


def _strings(values: list[str], shape: tuple[int, ...]) -> np.ndarray:
    return np.array(values, dtype=np.dtypes.StringDType()).reshape(shape)


def _top_partners(counts: np.ndarray, allowed: np.ndarray, k: int) -> tuple[np.ndarray, np.ndarray]:
    """(global index, count) of the k largest positive counts per row among `allowed` columns;
    ties to the lower global index; -1 / 0 where fewer."""
    masked = np.where(allowed, counts, 0)
    order = np.argsort(-masked, axis=1, kind="stable")[:, :k]
    top = np.take_along_axis(masked, order, 1)
    ids = np.where(top > 0, order, -1)
    pad = k - ids.shape[1]
    if pad > 0:
        ids = np.pad(ids, ((0, 0), (0, pad)), constant_values=-1)
        top = np.pad(top, ((0, 0), (0, pad)))
    return ids, top


def _contexts(
    partial: HarvestPartial, rows: slice, inputs: HarvestInputs, decode: Decode
) -> dict[str, np.ndarray]:
    idx = partial.top_indices[rows]
    ppi = partial.positions_per_input
    filled = [e for e in idx.reshape(-1).tolist() if e != EMPTY_INDEX]
    pieces: list[list[int]] = []
    for e in filled:
        ids = inputs.inputs[e // ppi].tolist()
        p = e % ppi
        pieces += [
            [ids[p]],
            ids[max(0, p - CONTEXT_BEFORE) : p],
            ids[p + 1 : p + 1 + CONTEXT_AFTER],
        ]
    texts = iter(decode(pieces))
    out: dict[str, list[str]] = {"top_token": [], "top_before": [], "top_after": []}
    for e in idx.reshape(-1).tolist():
        for name in out:
            out[name].append(next(texts) if e != EMPTY_INDEX else "")
    return {name: _strings(values, idx.shape) for name, values in out.items()}


def _token_stats(
    partial: HarvestPartial, offset: int, C: int, k: int, decode: Decode
) -> dict[str, np.ndarray]:
    """Per component, the input tokens it fires on, top k by precision (ties: more firings, then
    lower id) and by recall (ties: lower id)."""
    partial.flush_tokens()
    partial.token_pairs.compact()
    partial.token_totals.compact()
    keys, counts = partial.token_pairs.keys, partial.token_pairs.counts
    lo, hi = np.searchsorted(keys >> TOKEN_BITS, [offset, offset + C])
    comp = (keys[lo:hi] >> TOKEN_BITS) - offset
    tok = keys[lo:hi] & ((1 << TOKEN_BITS) - 1)
    n = counts[lo:hi]
    totals = partial.token_totals.counts[np.searchsorted(partial.token_totals.keys, tok)]
    precision = n / totals
    recall = n / partial.firing_count[offset + comp]
    starts = np.searchsorted(comp, np.arange(C))
    out: dict[str, np.ndarray] = {}
    for by, order in (
        ("precision", np.lexsort((tok, -n, -precision, comp))),
        ("recall", np.lexsort((tok, -recall, comp))),
    ):
        rank = np.arange(len(order)) - starts[comp[order]]
        keep = order[rank < k]
        rows, cols = comp[keep], rank[rank < k]
        ids = np.full((C, k), -1, np.int64)
        prec = np.full((C, k), np.nan)
        rec = np.full((C, k), np.nan)
        cnt = np.zeros((C, k), np.int64)
        ids[rows, cols], prec[rows, cols] = tok[keep], precision[keep]
        rec[rows, cols], cnt[rows, cols] = recall[keep], n[keep]
        out[f"tokens_by_{by}_id"] = ids
        out[f"tokens_by_{by}_text"] = _texts(ids, decode)
        out[f"tokens_by_{by}_precision"] = prec
        out[f"tokens_by_{by}_recall"] = rec
        out[f"tokens_by_{by}_count"] = cnt
    return out


def _logits(mean_change: np.ndarray, k: int, decode: Decode) -> dict[str, np.ndarray]:
    up, up_v, down, down_v = top_changes(mean_change, k)
    out = {}
    for way, ids, values in (("up", up, up_v), ("down", down, down_v)):
        out[f"logit_{way}_id"] = ids
        out[f"logit_{way}_text"] = _texts(ids, decode)
        out[f"logit_{way}_change"] = values
    return out


def summarize(
    partial: HarvestPartial,
    inputs: HarvestInputs,
    logit_changes: dict[str, np.ndarray] | None,
    decode: Decode | None,
) -> dict[str, dict[str, np.ndarray]]:
    """The stored arrays of every module. `logit_changes` {module: (C, vocab) mean change} for
    causal language models; `decode` token ids -> text for token inputs."""
    s = partial.settings
    offsets = partial.offsets
    G = sum(partial.sizes)
    owner = np.repeat(np.arange(len(partial.modules)), partial.sizes)
    starts = np.array([offsets[m] for m in partial.modules])
    out: dict[str, dict[str, np.ndarray]] = {}
    for mi, (module, C) in enumerate(zip(partial.modules, partial.sizes, strict=True)):
        o = offsets[module]
        rows = slice(o, o + C)
        count = partial.firing_count[rows]
        with np.errstate(invalid="ignore", divide="ignore"):
            mean = np.where(count > 0, partial.ci_sum[rows] / count, np.nan)
        top = partial.top_indices[rows]
        filled = top != EMPTY_INDEX
        ppi = partial.positions_per_input
        arrays = {
            "firing_count": count.copy(),
            "firing_frequency": count / max(partial.n_positions, 1),
            "mean_ci_when_firing": mean,
            "ci_histogram": partial.histogram[rows].copy(),
            "top_ci": np.where(filled, partial.top_values[rows], np.nan).astype(np.float32),
            "top_input": np.where(filled, top // ppi, -1),
            "top_position": np.where(filled, top % ppi, -1),
        }
        block = partial.coactivation[rows]
        not_self = np.ones((C, G), bool)
        not_self[np.arange(C), o + np.arange(C)] = False
        within = (owner == mi)[None, :] & not_self
        ids, counts = _top_partners(block, within, s.partners)
        arrays["coact_within_component"] = np.where(ids >= 0, ids - o, -1)
        arrays["coact_within_count"] = counts
        ids, counts = _top_partners(block, np.broadcast_to(owner != mi, (C, G)), s.partners)
        safe = np.maximum(ids, 0)
        arrays["coact_across_module"] = np.where(ids >= 0, owner[safe], -1)
        arrays["coact_across_component"] = np.where(ids >= 0, safe - starts[owner[safe]], -1)
        arrays["coact_across_count"] = counts
        if inputs.kind != "vectors" and decode is not None:
            arrays.update(_contexts(partial, rows, inputs, decode))
            arrays.update(_token_stats(partial, o, C, s.top_tokens, decode))
        if logit_changes is not None:
            arrays.update(_logits(logit_changes[module], s.top_tokens, decode or plain_decode))
        out[module] = arrays
    return out
