"""An answer of the prompt playground: the AblateRequest of a mask (a mode and a selection), and
its response as the page shows it: the next tokens (or a toy's outputs) beside the target's, the
divergence, and how the answer moved from the one before."""

from __future__ import annotations

import math
from collections.abc import Iterable, Sequence
from dataclasses import dataclass

import torch

from services.explorer.views.playground_inputs import IdsAsText
from services.explorer.views.playground_query import (
    SELECTION_MODES,
    PromptQuery,
    Selection,
    component_values,
)
from spd_client.generated.spd.v1 import decomposition_service_pb2 as pb
from spd_client.messages import DIVERGENCES, MASK_MODES
from spd_client.tensor_codec import from_proto, to_proto
from spd_core.text.tokens import top_next_tokens

DIVERGENCE_NAMES = {code: name for name, code in DIVERGENCES.items() if name}


@dataclass(frozen=True)
class Prob:
    id: int
    text: str
    prob: float


@dataclass(frozen=True)
class Answer:
    """One Ablate answer: next tokens (sequence models with a vocabulary) or outputs (toys
    with a vector input), per mask sample, beside the target's; the divergence per sample."""

    description: str
    samples: list[list[Prob]]
    target: list[Prob]
    outputs: list[list[float]]
    target_output: list[float]
    divergence: list[float]
    divergence_type: str


@dataclass(frozen=True)
class Change:
    """A next token (or an output) in the answer before the last press and after it; None
    where it was not among the top tokens."""

    text: str
    before: float | None
    after: float | None

    @property
    def difference(self) -> float | None:
        if self.before is None or self.after is None:
            return None
        return self.after - self.before


def describe(mode: str, selection: Selection, q: PromptQuery) -> str:
    """The mask of an answer in words."""
    chosen = " ".join(component_values(selection)) or "nothing"
    delta = " + delta" if q.delta else ""
    words = {
        "keep": f"keep only {chosen}{delta}",
        "ablate": f"ablate {chosen}{delta}",
        "ci": f"CI masks{delta}",
        "rounded_ci": f"rounded CI masks (CI > {q.threshold:g}){delta}",
        "stochastic": f"stochastic masks (seed {q.seed}, {q.samples} sample"
        f"{'s' if q.samples > 1 else ''}){delta}",
    }
    return words[mode]


def ablate_request(
    name: str, kind: str, q: PromptQuery, model_input: object, mode: str, selection: Selection
) -> pb.AblateRequest:
    """The AblateRequest of one answer (the JSON API's for the same URL)."""
    request = pb.AblateRequest(
        decomposition=name,
        mode=MASK_MODES[mode],  # type: ignore[arg-type]
        use_delta=q.delta,
        rounding_threshold=q.threshold if mode == "rounded_ci" else 0.0,
    )
    if mode in SELECTION_MODES:
        for module, indices in selection.items():
            request.components[module].indices.extend(indices)
    if mode == "stochastic":
        request.n_samples = q.samples
        request.seed = q.seed
    if kind == "text":
        request.text = str(model_input)
        request.top_k_tokens = q.k
    else:
        request.inputs.CopyFrom(to_proto(model_input))  # type: ignore[arg-type]
    return request


def _probs(top: Iterable[tuple[int, str, float]]) -> list[Prob]:
    return [Prob(int(i), t.replace("\n", "⏎"), float(p)) for i, t, p in top]


def answer_of(response: pb.AblateResponse, kind: str, k: int, description: str) -> Answer:
    """The Answer of an AblateResponse."""
    divergence = from_proto(response.divergence)[:, 0].tolist()
    kind_name = DIVERGENCE_NAMES.get(response.divergence_type, "divergence")
    if response.HasField("outputs"):
        outputs, target = from_proto(response.outputs), from_proto(response.target_output)
    else:
        outputs = target = None
    if response.next_tokens:
        samples = [
            _probs(zip(n.ids, n.strings, n.probs, strict=True)) for n in response.next_tokens
        ]
        t = response.target_next_tokens
        target_probs = _probs(zip(t.ids, t.strings, t.probs, strict=True))
        return Answer(description, samples, target_probs, [], [], divergence, kind_name)
    assert outputs is not None and target is not None
    if kind == "ids":  # next-token logits (S, 1, seq, vocab): the last position's top tokens
        decoder = IdsAsText()
        samples = [
            _probs(top_next_tokens(torch.from_numpy(o[0, -1].copy()), decoder, k)) for o in outputs
        ]
        target_probs = _probs(top_next_tokens(torch.from_numpy(target[0, -1].copy()), decoder, k))
        answer = Answer(description, samples, target_probs, [], [], divergence, kind_name)
    elif kind == "vector":
        answer = Answer(
            description,
            [],
            [],
            [o[0].reshape(-1).tolist() for o in outputs],
            target[0].reshape(-1).tolist(),
            divergence,
            kind_name,
        )
    else:  # an encoder: hidden states, no next tokens
        answer = Answer(description, [], [], [], [], divergence, kind_name)
    return answer


def changes(before: Answer, after: Answer, labels: Sequence[str]) -> list[Change]:
    """How the first sample's next tokens (or outputs) moved from `before` to `after`: every
    token among either's top tokens, most probable now first."""
    if after.outputs:
        return [
            Change(label, b, a)
            for label, b, a in zip(labels, before.outputs[0], after.outputs[0], strict=True)
        ]
    was = {p.id: p for p in before.samples[0]} if before.samples else {}
    now = {p.id: p for p in after.samples[0]} if after.samples else {}
    rows = [Change(p.text, was[i].prob if i in was else None, p.prob) for i, p in now.items()]
    rows += [Change(p.text, p.prob, None) for i, p in was.items() if i not in now]
    return rows


def divergence_level(value: float) -> int:
    """0..10 on a fixed scale (1 - e^-D), so shades compare across pages."""
    return round(10 * (1 - math.exp(-max(value, 0.0)))) if math.isfinite(value) else 10
