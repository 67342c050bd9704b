"""Which components of an induction-2l decomposition carry the induction mechanism.

    python benchmarks/induction_mechanism.py STORE [--batches 8] [--top 3] [--seed 123]

On fresh repeated-span batches (seeded, not the training stream) it computes every module's
causal importances and prints, per module, the components with the largest mean CI at induction
positions (inside a second copy, where the next token is fixed by the first copy) beside their
mean CI at the other positions, and the head each one writes to or reads from (the head whose
slice of the component's factor has the largest norm: U for q/k/v, whose outputs are split by
head; V for o, whose input is). Then the CE of the next token at induction positions and at the
others under the target, under CI masks and with every component ablated, and the share of that
ablation gap CI masks lose at induction positions. One JSON line per figure.
"""

from __future__ import annotations

import argparse

import torch
from jsonl import emit
from torch.nn import functional as F

from spd_core.loading import load_decomposition
from spd_core.model.masks import ModuleMask
from spd_core.targets.induction.data import InductionData


def head_of(factor_row: torch.Tensor, n_heads: int) -> tuple[int, float]:
    """(head, share of the row's squared norm in that head's slice)."""
    energy = factor_row.reshape(n_heads, -1).pow(2).sum(-1)
    head = int(energy.argmax())
    return head, float(energy[head] / energy.sum())


def next_token_ce(logits: torch.Tensor, tokens: torch.Tensor, where: torch.Tensor) -> float:
    """Mean CE of predicting tokens[:, t + 1] at the positions t where `where` (B, S) holds."""
    ce = F.cross_entropy(logits[:, :-1].transpose(1, 2), tokens[:, 1:], reduction="none")
    return float(ce[where[:, :-1]].mean())


def main() -> None:
    parser = argparse.ArgumentParser(
        description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter
    )
    parser.add_argument("store")
    parser.add_argument("--batches", type=int, default=8, help="batches of 64 sequences")
    parser.add_argument("--top", type=int, default=3, help="components shown per module")
    parser.add_argument("--seed", type=int, default=123)
    args = parser.parse_args()

    decomposition = load_decomposition(args.store)
    model = decomposition.model
    spec = decomposition.target_spec["spec"]
    if spec.get("kind") != "induction":
        raise SystemExit(f"{args.store} does not decompose the induction target")
    data = InductionData(spec["vocab_size"], spec["seq_len"], spec["span_min"], spec["span_max"])
    n_heads = int(spec["n_heads"])
    gen = torch.Generator().manual_seed(args.seed)
    sums: dict[str, dict[str, torch.Tensor]] = {}
    ce = {"target": [0.0, 0.0], "ci": [0.0, 0.0], "zero": [0.0, 0.0]}
    with torch.no_grad():
        for _ in range(args.batches):
            batch = data.sample(64, gen)
            rows, positions, _ = batch.induction_positions()
            induction = torch.zeros(batch.tokens.shape, dtype=torch.bool)
            induction[rows, positions] = True
            acts = model.prepare(batch.tokens)
            ci = model.causal_importances(acts).lower
            for name, g in ci.items():
                entry = sums.setdefault(name, {"ind": 0.0, "other": 0.0})
                entry["ind"] = entry["ind"] + g[induction].mean(0) / args.batches
                entry["other"] = entry["other"] + g[~induction].mean(0) / args.batches
            outputs = {
                "target": acts.clean.output,
                "ci": model.masked_forward(acts, {n: ModuleMask(mask=g) for n, g in ci.items()}),
                "zero": model.masked_forward(
                    acts, {n: ModuleMask(mask=torch.zeros_like(g)) for n, g in ci.items()}
                ),
            }
            for key, logits in outputs.items():
                ce[key][0] += next_token_ce(logits, batch.tokens, induction) / args.batches
                ce[key][1] += next_token_ce(logits, batch.tokens, ~induction) / args.batches
    for name, entry in sums.items():
        comp = model.components_of(name)
        factor = comp.V if name.endswith("o_proj") else comp.U
        order = (entry["ind"]).argsort(descending=True)[: args.top]
        for rank, c in enumerate(order.tolist()):
            head, share = head_of(factor[c].detach(), n_heads)
            emit(f"{name}/top{rank}/component", c, "index")
            emit(f"{name}/top{rank}/ci_induction", float(entry["ind"][c]), "ci")
            emit(f"{name}/top{rank}/ci_other", float(entry["other"][c]), "ci")
            emit(f"{name}/top{rank}/head", head, f"head (share {share:.2f})")
    for key, (on, off) in ce.items():
        emit(f"ce_{key}/induction_positions", on, "nats")
        emit(f"ce_{key}/other_positions", off, "nats")
    # at the other positions the next token is a random filler: the target is no better than
    # ablating everything there, so only the induction positions have an ablation gap to recover
    gap = ce["zero"][0] - ce["target"][0]
    emit("ce_unrecovered_ci/induction_positions", (ce["ci"][0] - ce["target"][0]) / gap, "frac")


if __name__ == "__main__":
    main()
