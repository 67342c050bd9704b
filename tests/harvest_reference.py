"""A brute-force harvest for the tests: every statistic computed the plain way from the CI of all
inputs at once (sorts over everything, dense counts, one full-window forward per ablated example),
to compare the streamed, sharded, merged harvest against."""

from __future__ import annotations

from collections.abc import Callable

import numpy as np
import torch

from spd_core.harvest.settings import CONTEXT_AFTER, CONTEXT_BEFORE, HarvestSettings
from spd_core.loading import Decomposition
from spd_core.model.masks import ModuleMask


@torch.no_grad()
def all_ci(dec: Decomposition, inputs: torch.Tensor, batch_size: int) -> dict[str, np.ndarray]:
    """{module: (examples, C)} lower CI of every input (by the harvest's batches, so that the
    floats are the very same), examples in global order."""
    parts: dict[str, list[np.ndarray]] = {m: [] for m in dec.model.module_names}
    for at in range(0, len(inputs), batch_size):
        ci = dec.model.causal_importances(dec.model.prepare(inputs[at : at + batch_size])).lower
        for m, v in ci.items():
            parts[m].append(v.reshape(-1, v.shape[-1]).numpy())
    return {m: np.concatenate(p) for m, p in parts.items()}


def _top(values: np.ndarray, k: int) -> tuple[np.ndarray, np.ndarray]:
    order = np.lexsort((np.arange(len(values)), -values))[:k]
    return values[order], order


def _partners(row: np.ndarray, allowed: np.ndarray, k: int) -> tuple[list[int], list[int]]:
    pairs = sorted((-int(n), g) for g, n in enumerate(row) if allowed[g] and n > 0)[:k]
    return [g for _, g in pairs], [-n for n, _ in pairs]


def brute_force(
    dec: Decomposition,
    inputs: torch.Tensor,
    s: HarvestSettings,
    decode: Callable[[list[int]], str] | None,
    causal: bool,
) -> dict[str, dict[str, np.ndarray]]:
    """The arrays a harvest stores, per module (those it stores for these inputs)."""
    ci = all_ci(dec, inputs, s.batch_size)
    modules = dec.model.module_names
    ppi = 1 if inputs.is_floating_point() else inputs.shape[1]
    fires = {m: ci[m] > s.threshold for m in modules}
    F = np.concatenate([fires[m] for m in modules], 1).astype(np.int64)
    coact = F.T @ F
    owner = np.concatenate([[i] * dec.model.C[m] for i, m in enumerate(modules)])
    offset = np.cumsum([0] + [dec.model.C[m] for m in modules])
    tokens = None if inputs.is_floating_point() else inputs.reshape(-1).numpy()
    out = {}
    for mi, m in enumerate(modules):
        v, f = ci[m], fires[m]
        C = v.shape[1]
        count = f.sum(0)
        total = np.array([v[f[:, c], c].astype(np.float64).sum() for c in range(C)])
        bins = np.clip(np.floor(v * np.float32(s.n_bins)), 0, s.n_bins - 1).astype(int)
        arrays = {
            "firing_count": count,
            "firing_frequency": count / len(v),
            "mean_ci_when_firing": np.where(count > 0, total / np.maximum(count, 1), np.nan),
            "ci_histogram": np.stack(
                [np.bincount(bins[:, c], minlength=s.n_bins) for c in range(C)]
            ),
        }
        tops = [_top(v[:, c], s.top_k) for c in range(C)]
        arrays["top_ci"] = np.stack([t[0] for t in tops])
        arrays["top_input"] = np.stack([t[1] // ppi for t in tops])
        arrays["top_position"] = np.stack([t[1] % ppi for t in tops])
        mine = owner == mi
        for kind, allowed_of in (
            ("within", lambda g0, mine=mine: mine & (np.arange(len(owner)) != g0)),
            ("across", lambda g0, mine=mine: ~mine),
        ):
            ids = np.full((C, s.partners), -1)
            counts = np.zeros((C, s.partners), np.int64)
            mods = np.full((C, s.partners), -1)
            for c in range(C):
                g0 = offset[mi] + c
                gs, ns = _partners(coact[g0], allowed_of(g0), s.partners)
                ids[c, : len(gs)] = [g - offset[owner[g]] for g in gs]
                mods[c, : len(gs)] = [owner[g] for g in gs]
                counts[c, : len(ns)] = ns
            arrays[f"coact_{kind}_component"] = ids
            arrays[f"coact_{kind}_count"] = counts
            if kind == "across":
                arrays["coact_across_module"] = mods
        if tokens is not None and decode is not None:
            arrays.update(_contexts(inputs, arrays, decode))
            arrays.update(_token_stats(f, tokens, s.top_tokens, decode))
        if causal:
            arrays.update(_logit_effects(dec, inputs, m, arrays, s, decode))
        out[m] = arrays
    return out


def _contexts(inputs: torch.Tensor, arrays: dict, decode: Callable) -> dict[str, np.ndarray]:
    token, before, after = [], [], []
    for w, p in zip(
        arrays["top_input"].reshape(-1), arrays["top_position"].reshape(-1), strict=True
    ):
        ids = inputs[w].tolist()
        token.append(decode([ids[p]]))
        before.append(decode(ids[max(0, p - CONTEXT_BEFORE) : p]))
        after.append(decode(ids[p + 1 : p + 1 + CONTEXT_AFTER]))
    shape = arrays["top_input"].shape
    return {
        "top_token": np.array(token, dtype=object).reshape(shape),
        "top_before": np.array(before, dtype=object).reshape(shape),
        "top_after": np.array(after, dtype=object).reshape(shape),
    }


def _token_stats(f: np.ndarray, tokens: np.ndarray, k: int, decode: Callable) -> dict:
    C = f.shape[1]
    vocab = sorted(set(tokens.tolist()))
    occurs = {t: int((tokens == t).sum()) for t in vocab}
    out: dict[str, np.ndarray] = {}
    for by in ("precision", "recall"):
        ids = np.full((C, k), -1)
        prec = np.full((C, k), np.nan)
        rec = np.full((C, k), np.nan)
        cnt = np.zeros((C, k), np.int64)
        for c in range(C):
            rows = []
            for t in vocab:
                n = int((f[:, c] & (tokens == t)).sum())
                if n:
                    p, r = n / occurs[t], n / int(f[:, c].sum())
                    rows.append(((-p, -n, t) if by == "precision" else (-r, t), t, p, r, n))
            rows.sort()
            for j, (_, t, p, r, n) in enumerate(rows[:k]):
                ids[c, j], prec[c, j], rec[c, j], cnt[c, j] = t, p, r, n
        out[f"tokens_by_{by}_id"] = ids
        out[f"tokens_by_{by}_text"] = np.array(
            [decode([i]) if i >= 0 else "" for i in ids.reshape(-1)], dtype=object
        ).reshape(ids.shape)
        out[f"tokens_by_{by}_precision"] = prec
        out[f"tokens_by_{by}_recall"] = rec
        out[f"tokens_by_{by}_count"] = cnt
    return out


@torch.no_grad()
def _logit_effects(
    dec: Decomposition, inputs: torch.Tensor, module: str, arrays: dict, s: HarvestSettings, decode
) -> dict[str, np.ndarray]:
    """One full-window forward per (component, example where it fires), the component masked at
    the example's position with the delta on; the logit change there, averaged."""
    model = dec.model
    C = model.C[module]
    k = s.top_tokens
    out = {f"logit_{w}_{f}": None for w in ("up", "down") for f in ("id", "text", "change")}
    ids = {w: np.full((C, k), -1) for w in ("up", "down")}
    vals = {w: np.full((C, k), np.nan) for w in ("up", "down")}
    for c in range(C):
        changes = []
        for j in range(min(s.ablation_examples, s.top_k)):
            if not arrays["top_ci"][c, j] > s.threshold:
                continue
            w, p = int(arrays["top_input"][c, j]), int(arrays["top_position"][c, j])
            x = inputs[w : w + 1]
            acts = model.prepare(x)
            mask = torch.ones(1, x.shape[1], C)
            mask[0, p, c] = 0
            delta = torch.ones(1, x.shape[1])
            y = model.masked_forward(acts, {module: ModuleMask(mask=mask, delta_mask=delta)})
            changes.append((y[0, p] - acts.clean.output[0, p]).double().numpy())
        if changes:
            mean = np.mean(changes, 0)
            for w, sign in (("up", -1), ("down", 1)):
                order = sorted(range(len(mean)), key=lambda t: (sign * mean[t], t))[:k]
                ids[w][c, : len(order)] = order
                vals[w][c, : len(order)] = mean[order]
    for w in ("up", "down"):
        out[f"logit_{w}_id"] = ids[w]
        out[f"logit_{w}_text"] = np.array(
            [decode([i]) if i >= 0 else "" for i in ids[w].reshape(-1)], dtype=object
        ).reshape(ids[w].shape)
        out[f"logit_{w}_change"] = vals[w]
    return out


def assert_same_harvest(found: dict, expected: dict, exact_floats: bool = False) -> None:
    """Integers and strings equal; CI values equal; means of CI to 1e-6 relative (the harvest
    sums float32 blocks of 64, the reference sums every entry in float64); logit changes to 1e-4
    (the harvest cuts windows after the position, the reference does not)."""
    assert found.keys() == expected.keys()
    for m in expected:
        assert set(found[m]) == set(expected[m]), (m, set(found[m]) ^ set(expected[m]))
        for name, want in expected[m].items():
            got = np.asarray(found[m][name])
            where = f"{m}/{name}"
            if want.dtype == object or got.dtype.kind in "OTU":
                flat = [str(x) for x in got.reshape(-1).tolist()]
                assert flat == [str(x) for x in np.asarray(want).reshape(-1).tolist()], where
            elif name.startswith("logit_") and name.endswith("_change"):
                np.testing.assert_allclose(got, want, rtol=1e-4, atol=1e-4, err_msg=where)
            elif got.dtype.kind == "f" and not exact_floats and name != "top_ci":
                np.testing.assert_allclose(got, want, rtol=1e-6, atol=0, err_msg=where)
            else:
                np.testing.assert_array_equal(got, want, err_msg=where)
