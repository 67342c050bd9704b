"""`spd query importances|ablate NAME --text ... | --token-ids ...`: language-model queries,
printed per token (importances) or as next tokens under masks (ablate, decoders)."""

from __future__ import annotations

import argparse
from typing import Any

from spd_client import Client, Importances


def _selected(imp: Importances, top_k: int | None) -> list[tuple[int, int, float]]:
    """(row, component, value) of one module's importances, in the response's order."""
    if imp.indices is None:
        return [(n, c, float(v)) for n, row in enumerate(imp.values) for c, v in enumerate(row)]
    if top_k is not None:
        return [
            (n, int(c), float(v))
            for n, (cs, vs) in enumerate(zip(imp.indices, imp.values, strict=True))
            for c, v in zip(cs, vs, strict=True)
        ]
    return [(int(n), int(c), float(v)) for (n, c), v in zip(imp.indices, imp.values, strict=True)]


def run_text_query(
    client: Client, args: argparse.Namespace, components: dict[str, list[int]]
) -> tuple[Any, list[str]]:
    """Importances per token, or (decoders) next tokens under masks, of --text / --token-ids."""
    ids = (
        None if args.token_ids is None else [int(i) for i in args.token_ids.split(",") if i.strip()]
    )
    if args.query == "importances":
        got = client.text_importances(
            args.name, args.text, ids, args.top_k, args.threshold, args.kind
        )
        result = {
            "token_ids": got.ids,
            "tokens": got.tokens,
            "importances": {
                m: {
                    "values": i.values.tolist(),
                    "indices": None if i.indices is None else i.indices.tolist(),
                }
                for m, i in got.importances.items()
            },
        }
        lines = []
        for module, imp in got.importances.items():
            lines.append(module)
            by_token: dict[int, list[str]] = {}
            for n, c, v in _selected(imp, args.top_k):
                by_token.setdefault(n, []).append(f"c{c}={v:.3f}")
            lines += [
                f"  {t!r:>16}  {' '.join(by_token.get(n, []))}" for n, t in enumerate(got.tokens)
            ]
        return result, lines
    got = client.text_ablate(
        args.name,
        args.mode,
        args.text,
        ids,
        args.top_tokens,
        components=components,
        modules=args.modules,
        use_delta=args.delta,
        n_samples=args.samples,
        seed=args.seed,
        rounding_threshold=args.rounding_threshold,
        divergence=args.divergence,
    )
    result = {
        "token_ids": got.ids,
        "tokens": got.tokens,
        "divergence": got.divergence.tolist(),
        "divergence_type": got.divergence_type,
        "next_tokens": [[list(t) for t in sample] for sample in got.next_tokens],
        "target_next_tokens": [list(t) for t in got.target_next_tokens],
    }
    if got.outputs is not None:
        result["outputs"] = got.outputs.tolist()
        result["target_output"] = None if got.target_output is None else got.target_output.tolist()
    lines = [f"tokens {got.tokens}", f"divergence ({got.divergence_type}) per sample"]
    lines += [f"  sample {s}: {float(d[0]):.6g}" for s, d in enumerate(got.divergence)]
    if got.next_tokens:
        lines.append(
            "  target: " + ", ".join(f"{t!r} {p:.3f}" for _, t, p in got.target_next_tokens)
        )
        lines += [
            f"  sample {s}: " + ", ".join(f"{t!r} {p:.3f}" for _, t, p in sample)
            for s, sample in enumerate(got.next_tokens)
        ]
    return result, lines
