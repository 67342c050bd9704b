"""Tiny Llama targets: the unigram baseline, the BPE tokenizer, token streams, the Hugging Face
export, and a build of a small spec that loads as an `hf` target and is decomposed."""

from __future__ import annotations

import json
import math
from pathlib import Path

import pytest
import torch

from services.cli import main
from spd_core.config import ConfigError, config_from_dict
from spd_core.hf.loading import hf_target_from_spec, load_hf_target
from spd_core.hf.packaged import HFModelError
from spd_core.loading import load_decomposition
from spd_core.store import FactorStore
from spd_core.targets.tiny_llama import spec as spec_module
from spd_core.targets.tiny_llama.bpe import END_OF_TEXT, train_bpe_tokenizer
from spd_core.targets.tiny_llama.build import MARKER, build_tiny_llama, built_tiny_llama
from spd_core.targets.tiny_llama.export import save_hf_folder
from spd_core.targets.tiny_llama.spec import TinyLlamaSpec
from spd_core.targets.tiny_llama.tokens import consecutive_windows, random_windows, token_stream
from spd_core.targets.tiny_llama.training import build_llama, init_llama_
from spd_core.targets.tiny_llama.unigram import unigram_ce, unigram_log_probs
from spd_core.targets.validation import TargetTrainingError
from spd_core.task import make_task
from spd_core.task.hf import hf_task
from spd_core.text.fetch import write_corpus
from spd_core.text.windows import token_windows
from spd_core.train.single_process import decompose

FIXTURE = Path(__file__).parent / "fixtures" / "tiny_corpus"
TEXTS = [p.read_text() for p in sorted(FIXTURE.glob("*.txt"))]
SMALL = {
    "corpora": ("sotu",),
    "eval_fraction": 0.3,
    "vocab_size": 320,
    "n_layers": 1,
    "d_model": 16,
    "n_heads": 2,
    "d_mlp": 32,
    "context_length": 16,
    "train_steps": 300,
    "batch_size": 8,
    "warmup_steps": 10,
    "eval_windows": 16,
    "min_gain_over_unigram": 0.25,  # reached: 0.54 (held-out CE 3.76, unigram 4.30)
}


@pytest.fixture(scope="module")
def tokenizer():
    return train_bpe_tokenizer(TEXTS, 320)


def test_unigram_ce_of_a_hand_case() -> None:
    # counts (2, 1, 1, 0) + 1 each over 4 + 4: p = (3/8, 2/8, 2/8, 1/8)
    log_p = unigram_log_probs(torch.tensor([0, 0, 1, 2]), vocab_size=4)
    torch.testing.assert_close(log_p.exp(), torch.tensor([3, 2, 2, 1], dtype=torch.float64) / 8)
    ce = unigram_ce(log_p, torch.tensor([[0, 3]]))
    assert ce == pytest.approx(-(math.log(3 / 8) + math.log(1 / 8)) / 2)


def test_bpe_tokenizer_is_byte_level_deterministic_and_learns_words(tokenizer) -> None:
    assert len(tokenizer) == 320 and tokenizer.eos_token == END_OF_TEXT
    assert tokenizer.eos_token_id == 0 == tokenizer.bos_token_id
    text = "The whale — naïve 日本 ✓"
    ids = tokenizer(text, add_special_tokens=False)["input_ids"]
    assert tokenizer.decode(ids) == text, "byte-level BPE must round-trip any text"
    assert len(tokenizer(" the", add_special_tokens=False)["input_ids"]) == 1, "no merge learnt"
    again = train_bpe_tokenizer(TEXTS, 320)
    assert again.backend_tokenizer.to_str() == tokenizer.backend_tokenizer.to_str()


def test_token_stream_matches_the_decomposition_windows(tokenizer) -> None:
    stream = token_stream(tokenizer, iter(TEXTS), batch=1)
    first = tokenizer(TEXTS[0], add_special_tokens=False)["input_ids"]
    assert stream[: len(first)].tolist() == first and stream[len(first)] == 0
    assert stream.numel() == sum(len(tokenizer(t)["input_ids"]) + 1 for t in TEXTS)
    windows = list(token_windows(tokenizer, iter(TEXTS), 16))
    assert torch.equal(torch.tensor(windows).flatten(), stream[: 16 * len(windows)])
    assert torch.equal(consecutive_windows(stream, 3, 16).flatten(), stream[:48])
    drawn = random_windows(stream, 5, 16, torch.Generator().manual_seed(0))
    for row in drawn:
        starts = [i for i in range(stream.numel() - 15) if torch.equal(stream[i : i + 16], row)]
        assert starts, "a random window is not a slice of the stream"


def test_export_loads_with_plain_transformers(tokenizer, tmp_path) -> None:
    from transformers import AutoTokenizer, LlamaForCausalLM

    spec = TinyLlamaSpec(**SMALL)
    model = build_llama(spec, len(tokenizer), tokenizer.eos_token_id)
    init_llama_(model, 0.5, torch.Generator().manual_seed(0))
    model.eval()
    save_hf_folder(model, tokenizer, tmp_path, spec.context_length)
    for name in ("config.json", "model.safetensors", "tokenizer.json"):
        assert (tmp_path / name).is_file(), name
    loaded = LlamaForCausalLM.from_pretrained(tmp_path)
    loaded_tok = AutoTokenizer.from_pretrained(tmp_path)
    ids = loaded_tok("Call me Ishmael.", return_tensors="pt").input_ids
    assert ids.tolist() == tokenizer("Call me Ishmael.", return_tensors="pt").input_ids.tolist()
    assert loaded_tok.model_max_length == 16
    with torch.no_grad():
        torch.testing.assert_close(loaded(ids).logits, model(ids).logits, rtol=0, atol=0)
    config = json.loads((tmp_path / "config.json").read_text())
    assert config["architectures"] == ["LlamaForCausalLM"] and config["hidden_act"] == "silu"
    tok_config = json.loads((tmp_path / "tokenizer_config.json").read_text())
    assert tok_config["tokenizer_class"] == "PreTrainedTokenizerFast", "not loadable by 4.x"


def test_training_is_deterministic_from_the_seed(tokenizer) -> None:
    from spd_core.targets.tiny_llama.training import train_llama

    spec = TinyLlamaSpec(**{**SMALL, "train_steps": 3})
    stream = token_stream(tokenizer, iter(TEXTS))
    a, b = (train_llama(spec, stream, 320, 0, log=lambda _: None) for _ in range(2))
    sa, sb = a.state_dict(), b.state_dict()
    assert all(torch.equal(sa[k], sb[k]) for k in sa)
    c = train_llama(spec.model_copy(update={"seed": 1}), stream, 320, 0, log=lambda _: None)
    assert not torch.equal(c.lm_head.weight, a.lm_head.weight)


@pytest.fixture
def small_cache(tmp_path, monkeypatch) -> Path:
    """A cache with the fixture text as corpus 'sotu', and tiny-llama-2l's spec made SMALL."""
    write_corpus(
        "sotu", "test fixture", {p.stem: p.read_text() for p in FIXTURE.glob("*.txt")}, tmp_path
    )
    monkeypatch.setitem(spec_module.TINY_LLAMAS, "tiny-llama-2l", TinyLlamaSpec(**SMALL))
    return tmp_path


def test_a_failing_build_raises_and_writes_nothing(small_cache) -> None:
    spec = TinyLlamaSpec(**{**SMALL, "train_steps": 2, "min_gain_over_unigram": 5.0})
    with pytest.raises(TargetTrainingError, match=r"does not beat it by 5\.0"):
        build_tiny_llama("tiny-llama-2l", small_cache, log=lambda _: None, spec=spec)
    assert not (small_cache / "targets").exists()


def test_built_target_is_an_hf_target_a_store_names(small_cache, tmp_path) -> None:
    with pytest.raises(HFModelError, match="spd data build-target tiny-llama-2l"):
        load_hf_target("tiny-llama-2l", cache_dir=small_cache)
    lines: list[str] = []
    folder = build_tiny_llama("tiny-llama-2l", small_cache, log=lines.append)
    assert built_tiny_llama("tiny-llama-2l", small_cache) == folder
    assert any("step 300/300" in line and "ETA" in line for line in lines), lines
    info = json.loads((folder / MARKER).read_text())
    assert info["check"]["held_out_ce"] <= info["check"]["unigram_ce"] - 0.25
    assert build_tiny_llama("tiny-llama-2l", small_cache, log=lines.append) == folder  # cached
    hf = load_hf_target("tiny-llama-2l", cache_dir=small_cache)
    assert hf.spec["source"] == str(folder) and hf.causal_lm and hf.context_length == 16
    moved = {**hf.spec, "source": str(small_cache / "gone")}  # the named folder was deleted
    assert hf_target_from_spec(moved, small_cache).spec["source"] == str(folder)
    config = config_from_dict(
        {
            "target": {
                "kind": "hf",
                "model": "tiny-llama-2l",
                "data": {"corpus": "sotu", "seq_len": 16, "eval_fraction": 0.3},
            },
            "module_info": [
                {"module_pattern": "model.layers.*.self_attn.*_proj", "C": 4},
                {"module_pattern": "model.layers.*.mlp.*_proj", "C": 4},
            ],
            "pretrained_model_output_attr": "logits",
            "loss_metric_configs": [
                {"classname": "ImportanceMinimalityLoss", "coeff": 1e-3, "pnorm": 2.0},
                {"classname": "StochasticReconLoss", "coeff": 1.0},
            ],
            "output_loss_type": "kl",
            "batch_size": 2,
            "steps": 2,
            "train_log_freq": 1,
            "eval": {"n_eval_batches": 1},
        }
    )
    task = hf_task(config, torch.device("cpu"), cache_dir=small_cache)
    decompose(config, task, out=tmp_path / "llama.zarr")
    store = FactorStore.open(tmp_path / "llama.zarr")
    assert store.target_spec["source"] == str(folder), "the store must name the built folder"
    assert len(store.modules) == 7
    loaded = load_decomposition(store)
    assert loaded.tokenizer is not None and loaded.tokenizer.eos_token_id == 0


def test_spd_data_lists_and_builds_the_targets(small_cache, monkeypatch, capsys) -> None:
    monkeypatch.setenv("SPD_CACHE_DIR", str(small_cache))
    assert main(["data", "list"]) == 0
    out = capsys.readouterr().out
    assert "induction-2l   missing" in out
    assert "tiny-llama-2l  missing  Hugging Face Llama  build with `spd data build-target" in out
    assert main(["data", "build-target", "tiny-llama-2l"]) == 0
    assert "step 300/300" in capsys.readouterr().out
    assert main(["data", "list"]) == 0
    assert f"tiny-llama-2l  built    Hugging Face Llama  {small_cache}" in capsys.readouterr().out
    with pytest.raises(SystemExit):
        main(["data", "build-target", "tiny-llama-9l"])
    err = capsys.readouterr().err
    assert "invalid choice: 'tiny-llama-9l'" in err and "induction-2l" in err, err


def test_a_tiny_llama_named_as_a_toy_target_says_how_to_name_it() -> None:
    config = config_from_dict(
        {
            "target": {"name": "tiny-llama-2l"},
            "module_info": [{"module_pattern": "x", "C": 1}],
            "loss_metric_configs": [{"classname": "StochasticReconLoss", "coeff": 1.0}],
            "batch_size": 1,
            "steps": 1,
        }
    )
    with pytest.raises(ConfigError, match=r"target: \{kind: hf, model: tiny-llama-2l"):
        make_task(config, torch.device("cpu"))
