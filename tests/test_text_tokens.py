"""Pure text/token helpers (the server reuses them): next-token top-k and per-token strings."""

import math

import pytest
import torch

from spd_core.text.tokens import TextInputError, check_token_ids, token_strings, top_next_tokens


class LetterTokenizer:
    """id i <-> the i-th lowercase letter."""

    def decode(self, ids: list[int]) -> str:
        return "".join(chr(ord("a") + i) for i in ids)


def test_top_next_tokens_are_softmax_probabilities_in_order():
    logits = torch.tensor([0.0, math.log(3.0), 0.0, math.log(4.0)])  # probs 1/9, 3/9, 1/9, 4/9
    got = top_next_tokens(logits, LetterTokenizer(), k=2)
    assert [(i, t) for i, t, _ in got] == [(3, "d"), (1, "b")]
    assert [p for *_, p in got] == pytest.approx([4 / 9, 3 / 9])
    assert len(top_next_tokens(logits, LetterTokenizer(), k=10)) == 4


def test_token_strings_decode_each_id_alone():
    assert token_strings(LetterTokenizer(), [2, 0, 19]) == ["c", "a", "t"]


def test_token_ids_must_be_integers_of_a_sequence():
    with pytest.raises(TextInputError, match="must be integers"):
        check_token_ids(torch.tensor([1.0, 2.0]), 10, None)
    with pytest.raises(TextInputError, match=r"shape \(1, 1, 2\)"):
        check_token_ids(torch.zeros(1, 1, 2, dtype=torch.int64), 10, None)
    assert check_token_ids([3, 9], 10, None).tolist() == [[3, 9]]
