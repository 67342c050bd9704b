"""Token windows: exact cutting (hand-checked with a word tokenizer), special tokens, streams."""

from __future__ import annotations

from pathlib import Path

import pytest
import torch

from spd_core.config import TextDataConfig
from spd_core.text.corpora import CorpusError, passages
from spd_core.text.windows import WindowStream, eval_windows, special_tokens, token_windows

FIXTURE = str(Path(__file__).parent / "fixtures" / "tiny_corpus")


class WordTokenizer:
    """One id per whitespace word (id = word length); optional [CLS]=100 / [SEP]=101 wrapping."""

    def __init__(self, wrap: bool) -> None:
        self.wrap = wrap
        self.eos_token_id = None if wrap else 0
        self.sep_token_id = 101 if wrap else None

    def __call__(self, text: str, add_special_tokens: bool, verbose: bool = True) -> dict:
        ids = [len(w) for w in text.split()]
        return {"input_ids": [100, *ids, 101] if self.wrap and add_special_tokens else ids}


def test_windows_cut_the_joined_texts_with_separators():
    tok = WordTokenizer(wrap=False)
    windows = list(token_windows(tok, iter(["a bb ccc", "dddd e"]), seq_len=3))
    # ids: 1 2 3 <eos 0> 4 1 <eos 0>  -> windows of 3, the tail (one id) dropped
    assert windows == [[1, 2, 3], [0, 4, 1]]


def test_windows_are_wrapped_in_the_tokenizers_special_tokens():
    tok = WordTokenizer(wrap=True)
    assert special_tokens(tok) == ([100], [101])
    windows = list(token_windows(tok, iter(["a bb ccc dddd"]), seq_len=4))
    # body of 2 ids: 1 2 | 3 4 | <sep 101> dropped
    assert windows == [[100, 1, 2, 101], [100, 3, 4, 101]]
    with pytest.raises(ValueError, match="no room"):
        list(token_windows(tok, iter(["a"]), seq_len=2))


def test_stream_is_reproducible_from_its_seed_and_keeps_to_its_split():
    tok = WordTokenizer(wrap=False)
    data = TextDataConfig(corpus=FIXTURE, seq_len=8, eval_fraction=0.3, shuffle_buffer=16)
    a = WindowStream(tok, data, "train", seed=1).next_batch(40)
    b = WindowStream(tok, data, "train", seed=1).next_batch(40)
    c = WindowStream(tok, data, "train", seed=2).next_batch(40)
    assert a.shape == (40, 8) and a.dtype == torch.int64
    assert torch.equal(a, b) and not torch.equal(a, c)
    # unshuffled eval windows are exactly the eval passages' ids, cut in corpus order
    held_out = eval_windows(tok, data, 5)
    ids = [i for p in passages(FIXTURE, "eval", 0.3) for i in [*tok(p.text, False)["input_ids"], 0]]
    assert held_out.tolist() == [ids[8 * k : 8 * k + 8] for k in range(5)]


def test_skipping_windows_continues_the_stream_where_using_them_would():
    tok = WordTokenizer(wrap=False)
    data = TextDataConfig(corpus=FIXTURE, seq_len=8, eval_fraction=0.3, shuffle_buffer=16)
    used = WindowStream(tok, data, "train", seed=1)
    used.next_batch(30)
    skipped = WindowStream(tok, data, "train", seed=1)
    skipped.skip(30)
    assert torch.equal(skipped.next_batch(20), used.next_batch(20))


def test_a_window_longer_than_the_split_is_a_clear_error():
    data = TextDataConfig(corpus=FIXTURE, seq_len=100_000, eval_fraction=0.3)
    stream = WindowStream(WordTokenizer(wrap=False), data, "eval", seed=0)
    with pytest.raises(CorpusError, match="fewer tokens than one window of 100000"):
        stream.next_batch(1)


def test_real_bert_tokenizer_windows_start_with_cls_and_end_with_sep(minilm):
    data = TextDataConfig(corpus=FIXTURE, seq_len=16, eval_fraction=0.3)
    batch = WindowStream(minilm.tokenizer, data, "train", seed=0).next_batch(4)
    assert batch.shape == (4, 16)
    assert (batch[:, 0] == minilm.tokenizer.cls_token_id).all()
    assert (batch[:, -1] == minilm.tokenizer.sep_token_id).all()
    text = minilm.tokenizer.decode(eval_windows(minilm.tokenizer, data, 1)[0, 1:-1])
    assert text.split()[0] in {p.text.lower().split()[0] for p in passages(FIXTURE, "eval", 0.3)}
