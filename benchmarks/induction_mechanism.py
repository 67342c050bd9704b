"""Which components of an induction-2l decomposition carry the induction mechanism.

    python benchmarks/induction_mechanism.py STORE [--batches 8] [--top 3] [--seed 123]
        [--min-ci 0.1] [--selectivity 5]

First the target's mechanism heads, scored as its build check scores them: each layer-0 head's
attention from t to t - 1 (previous-token heads) and each layer-1 head's attention from a second
copy to the token after its match (induction heads); a head scoring above 0.5 is a mechanism head.

Then, on fresh repeated-span batches (seeded, not the training stream), every component's mean
causal importance at three kinds of position: induction positions (inside a second copy, where the
next token is fixed by the first copy: the induction head's queries), source positions (the tokens
after each match in the first copy, which the induction head reads: its keys and values, and what
the previous-token head writes there) and the rest. A component carries the mechanism when its mean
CI at induction or at source positions is at least --min-ci and at least --selectivity times its
mean CI at the rest. Per module: the --top components by that CI, each with its three CIs, the head
its factor writes to or reads from (the largest slice of U for q/k/v, whose outputs are split by
head; of V for o, whose input is) with that head's share of the factor's squared norm, and the
share of the layer's mechanism heads together (beside the same share of the target's matrix itself,
which a decomposition that does not separate heads matches); the count of mechanism components,
their mean share in the mechanism heads, and the next-token CE at induction positions when they are
ablated (masks set to 0, every other component keeping its CI). Then all modules' mechanism
components ablated at once, and the CE of the next token at induction positions and at the others
under the target, under CI masks and with every component ablated, and the share of that ablation
gap CI masks lose at induction positions.

One JSON line per figure.
"""

from __future__ import annotations

import argparse
from dataclasses import dataclass

import torch
from jsonl import emit
from torch.nn import functional as F

from spd_core.loading import load_decomposition
from spd_core.model.component_model import ComponentModel
from spd_core.model.masks import ModuleMask
from spd_core.targets.induction.check import (
    MIN_INDUCTION_ATTENTION,
    MIN_PREV_TOKEN_ATTENTION,
    induction_scores,
    prev_token_scores,
)
from spd_core.targets.induction.data import InductionData

PLACES = ("induction", "source", "rest")


@dataclass
class Batch:
    """Tokens and (B, S) masks of their induction and source positions."""

    tokens: torch.Tensor
    induction: torch.Tensor
    source: torch.Tensor

    def where(self, place: str) -> torch.Tensor:
        if place == "rest":
            return ~(self.induction | self.source)
        return getattr(self, place)


def batches_of(data: InductionData, n: int, seed: int) -> list[Batch]:
    """`n` seeded batches of 64 sequences."""
    gen = torch.Generator().manual_seed(seed)
    out = []
    for _ in range(n):
        spans = data.sample(64, gen)
        rows, positions, sources = spans.induction_positions()
        induction = torch.zeros(spans.tokens.shape, dtype=torch.bool)
        induction[rows, positions] = True
        source = torch.zeros_like(induction)
        source[rows, sources] = True
        out.append(Batch(spans.tokens, induction, source))
    return out


def head_shares(factor_row: torch.Tensor, n_heads: int) -> torch.Tensor:
    """(n_heads,) share of the row's squared norm in each head's slice."""
    energy = factor_row.reshape(n_heads, -1).pow(2).sum(-1)
    return energy / energy.sum()


def mechanism_heads(target: torch.nn.Module, data: InductionData, seed: int) -> list[list[int]]:
    """Per layer, the heads that do the layer's part of the mechanism (layer 0: previous token,
    layer 1: induction), scored on one batch as the target's build check scores them."""
    spans = data.sample(512, torch.Generator().manual_seed(seed))
    patterns = target.attention_patterns(spans.tokens)
    scores = [prev_token_scores(patterns[0]), induction_scores(patterns[1], spans)]
    heads = []
    for layer, (kind, threshold) in enumerate(
        [("prev_token", MIN_PREV_TOKEN_ATTENTION), ("induction", MIN_INDUCTION_ATTENTION)]
    ):
        for head, score in enumerate(scores[layer].tolist()):
            emit(f"layers.{layer}/head{head}/{kind}_attention", score, "attention")
        heads.append([h for h, score in enumerate(scores[layer].tolist()) if score > threshold])
    return heads


def next_token_ce(logits: torch.Tensor, tokens: torch.Tensor, where: torch.Tensor) -> float:
    """Mean CE of predicting tokens[:, t + 1] at the positions t where `where` (B, S) holds."""
    ce = F.cross_entropy(logits[:, :-1].transpose(1, 2), tokens[:, 1:], reduction="none")
    return float(ce[where[:, :-1]].mean())


@torch.no_grad()
def mean_ci_and_ce(
    model: ComponentModel, batches: list[Batch]
) -> tuple[dict[str, dict[str, torch.Tensor]], dict[str, tuple[float, float]]]:
    """Per module and place, each component's mean CI there; the next-token CE at induction
    positions and at the others under the target, CI masks and every component ablated."""
    n = len(batches)
    means: dict[str, dict[str, torch.Tensor]] = {}
    ce = {"target": [0.0, 0.0], "ci": [0.0, 0.0], "zero": [0.0, 0.0]}
    for batch in batches:
        acts = model.prepare(batch.tokens)
        ci = model.causal_importances(acts).lower
        for name, g in ci.items():
            module = means.setdefault(name, {p: torch.zeros(g.shape[-1]) for p in PLACES})
            for place in PLACES:
                module[place] += g[batch.where(place)].mean(0) / n
        outputs = {
            "target": acts.clean.output,
            "ci": model.masked_forward(acts, {k: ModuleMask(mask=g) for k, g in ci.items()}),
            "zero": model.masked_forward(
                acts, {k: ModuleMask(mask=torch.zeros_like(g)) for k, g in ci.items()}
            ),
        }
        for key, logits in outputs.items():
            ce[key][0] += next_token_ce(logits, batch.tokens, batch.induction) / n
            ce[key][1] += next_token_ce(logits, batch.tokens, ~batch.induction) / n
    return means, {key: (on, off) for key, (on, off) in ce.items()}


@torch.no_grad()
def ce_without(
    model: ComponentModel, batches: list[Batch], ablate: dict[str, list[int]]
) -> tuple[float, float]:
    """Next-token CE at induction and at other positions under CI masks with the components
    `ablate[module]` of each module set to 0."""
    on = off = 0.0
    for batch in batches:
        acts = model.prepare(batch.tokens)
        masks = {k: ModuleMask(mask=g) for k, g in model.causal_importances(acts).lower.items()}
        for module, components in ablate.items():
            masks[module].mask[..., components] = 0.0
        logits = model.masked_forward(acts, masks)
        on += next_token_ce(logits, batch.tokens, batch.induction) / len(batches)
        off += next_token_ce(logits, batch.tokens, ~batch.induction) / len(batches)
    return on, off


def main() -> None:
    parser = argparse.ArgumentParser(
        description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter
    )
    parser.add_argument("store")
    parser.add_argument("--batches", type=int, default=8, help="batches of 64 sequences")
    parser.add_argument("--top", type=int, default=3, help="components shown per module")
    parser.add_argument("--seed", type=int, default=123)
    parser.add_argument(
        "--min-ci",
        type=float,
        default=0.1,
        help="a mechanism component's least mean CI at induction or at source positions",
    )
    parser.add_argument(
        "--selectivity",
        type=float,
        default=5.0,
        help="... and its least ratio of that to its mean CI at the other positions",
    )
    args = parser.parse_args()

    decomposition = load_decomposition(args.store)
    model = decomposition.model
    spec = decomposition.target_spec["spec"]
    if spec.get("kind") != "induction":
        raise SystemExit(f"{args.store} does not decompose the induction target")
    data = InductionData(spec["vocab_size"], spec["seq_len"], spec["span_min"], spec["span_max"])
    n_heads = int(spec["n_heads"])
    heads = mechanism_heads(model.target, data, args.seed)
    batches = batches_of(data, args.batches, args.seed)
    means, ce = mean_ci_and_ce(model, batches)
    mechanism: dict[str, list[int]] = {}
    for name, ci in means.items():
        layer = int(name.split(".")[1])
        comp = model.components_of(name)
        factor = (comp.V if name.endswith("o_proj") else comp.U).detach()
        shares = torch.stack([head_shares(row, n_heads) for row in factor])
        in_heads = shares[:, heads[layer]].sum(-1)
        weight = comp.weight.T if name.endswith("o_proj") else comp.weight  # heads on dim 0
        emit(
            f"{name}/weight_mechanism_heads_share",
            float(head_shares(weight.flatten(), n_heads)[heads[layer]].sum()),
            f"share of the target matrix in heads {heads[layer]}",
        )
        used = torch.maximum(ci["induction"], ci["source"])
        for rank, c in enumerate(used.argsort(descending=True)[: args.top].tolist()):
            head = int(shares[c].argmax())
            emit(f"{name}/top{rank}/component", c, "index")
            for place in PLACES:
                emit(f"{name}/top{rank}/ci_{place}", float(ci[place][c]), "ci")
            emit(f"{name}/top{rank}/head", head, f"head (share {float(shares[c, head]):.2f})")
            emit(
                f"{name}/top{rank}/mechanism_heads_share",
                float(in_heads[c]),
                f"share in heads {heads[layer]}",
            )
        chosen = ((used >= args.min_ci) & (used >= args.selectivity * ci["rest"])).nonzero()
        mechanism[name] = chosen.flatten().tolist()
        emit(f"{name}/mechanism/count", len(mechanism[name]), f"components {mechanism[name]}")
        if mechanism[name]:
            emit(
                f"{name}/mechanism/mechanism_heads_share",
                float(in_heads[mechanism[name]].mean()),
                f"mean share in heads {heads[layer]}",
            )
            on, _ = ce_without(model, batches, {name: mechanism[name]})
            emit(f"{name}/mechanism_ablated/ce_induction_positions", on, "nats")
    on, off = ce_without(model, batches, mechanism)
    emit("all/mechanism_ablated/ce_induction_positions", on, "nats")
    emit("all/mechanism_ablated/ce_other_positions", off, "nats")
    for key, (on, off) in ce.items():
        emit(f"ce_{key}/induction_positions", on, "nats")
        emit(f"ce_{key}/other_positions", off, "nats")
    # at the other positions the next token is a random filler: the target is no better than
    # ablating everything there, so only the induction positions have an ablation gap to recover
    gap = ce["zero"][0] - ce["target"][0]
    emit("ce_unrecovered_ci/induction_positions", (ce["ci"][0] - ce["target"][0]) / gap, "frac")


if __name__ == "__main__":
    main()
