"""What the prompt playground feeds a decomposition: a text (language models), an input vector
(toys such as TMS) or a sequence of token ids (toys such as induction-2l, which have no
tokenizer), checked against the decomposition, and the example inputs its form offers: one-hot
vectors and a repeated span."""

from __future__ import annotations

import random
from collections.abc import Sequence

import numpy as np

from services.explorer.page_errors import bad_parameter
from services.explorer.views.playground_query import PromptQuery, prompt_url
from spd_client.generated.spd.v1 import decomposition_service_pb2 as pb
from spd_client.generated.spd.v1 import tensor_pb2

EXAMPLE_TEXT = "The cat sat on the mat because"
"""The prompt the empty form suggests."""


class IdsAsText:
    """The 'tokenizer' of a toy over token ids: each id reads as its number."""

    @staticmethod
    def decode(ids: Sequence[int]) -> str:
        return str(ids[0])


def input_kind(d: pb.Decomposition) -> str:
    """'text', 'ids' or 'vector': which editor the playground shows for `d`."""
    if d.text_model:
        return "text"
    if d.input_dtype in (tensor_pb2.DTYPE_INT64, tensor_pb2.DTYPE_INT32):
        return "ids"
    return "vector"


def vocab_of(d: pb.Decomposition) -> int:
    """A token-id toy's vocabulary: the last dimension of its output (next-token logits)."""
    return int(d.output_shape[-1]) if len(d.output_shape) >= 2 else 0


def repeated_span(seq_len: int, vocab: int) -> list[int]:
    """A sequence with one span of distinct tokens written twice, the second copy cut one token
    short so that the last position's next token is the span's last (an induction target
    answers it by copying): a fixed shuffle of the vocabulary gives the span and the fillers."""
    k = max(2, min(seq_len // 3, vocab // 2))
    order = random.Random(0).sample(range(vocab), vocab)
    span, fillers = order[:k], order[k:] or order
    first, second = 2, seq_len - k + 1
    tokens = [fillers[i % len(fillers)] for i in range(seq_len)]
    tokens[first : first + k] = span
    tokens[second:] = span[: seq_len - second]
    return tokens


def one_hot(n: int, i: int) -> tuple[float, ...]:
    return tuple(1.0 if j == i else 0.0 for j in range(n))


def model_input(d: pb.Decomposition, kind: str, q: PromptQuery) -> object:
    """The query's input as the RPCs take it (text, or a (1, ...) array), checked (400)."""
    if kind == "text":
        if q.x is not None or q.ids is not None:
            raise bad_parameter(
                f"{d.name!r} is a language model: give text=..., not {'x' if q.x else 'ids'}"
            )
        return q.text
    shape = [int(s) for s in d.input_shape]
    if q.text is not None:
        wants = "ids=... (comma-separated token ids)" if kind == "ids" else "x=... (numbers)"
        raise bad_parameter(f"{d.name!r} is a toy that takes no text: give {wants}")
    values = q.ids if kind == "ids" else q.x
    if kind == "ids" and q.x is not None:
        raise bad_parameter(f"{d.name!r} takes token ids: give ids=..., not x")
    if kind == "vector" and q.ids is not None:
        raise bad_parameter(f"{d.name!r} takes an input vector: give x=..., not ids")
    assert values is not None
    if len(shape) != 1 or len(values) != shape[0]:
        raise bad_parameter(
            f"{'ids' if kind == 'ids' else 'x'} has {len(values)} values; {d.name!r} takes "
            f"{'x'.join(map(str, shape))}"
        )
    if kind == "ids":
        vocab = vocab_of(d)
        bad = [i for i in values if not 0 <= i < vocab]
        if bad:
            raise bad_parameter(f"ids: {bad[0]} is not a token id of {d.name!r} (0..{vocab - 1})")
        return np.asarray([values], dtype=np.int64)
    return np.asarray([values], dtype=np.float32)


def presets(d: pb.Decomposition, kind: str, q: PromptQuery) -> list[tuple[str, str]]:
    """(name, URL) of example inputs: one-hot vectors, or a repeated span of token ids."""
    base = q.with_changes(text=None, x=None, ids=None, pos=None, was_mode=None, was_selected={})
    if kind == "vector" and len(d.input_shape) == 1:
        n = int(d.input_shape[0])
        return [(f"e{i}", prompt_url(d.name, base.with_changes(x=one_hot(n, i)))) for i in range(n)]
    if kind == "ids" and len(d.input_shape) == 1 and vocab_of(d) > 2:
        ids = tuple(repeated_span(int(d.input_shape[0]), vocab_of(d)))
        return [("repeated span", prompt_url(d.name, base.with_changes(ids=ids)))]
    return []
