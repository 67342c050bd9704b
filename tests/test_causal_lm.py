"""Whether a target is a causal LM comes from transformers' own causal-LM registry, whatever the
class is called: a user's GPT-2 folder (`GPT2LMHeadModel`) decomposes with `kl` and gets the LM
metrics."""

from __future__ import annotations

import pytest
import torch

from spd_core.hf.causal_lm import is_causal_lm_model
from spd_core.hf.loading import load_hf_target
from spd_core.store import FactorStore
from tests.conftest import GPT2_MODULES

TINY = {"vocab_size": 64}


def _build(name: str):
    import transformers as t

    configs = {
        "GPT2LMHeadModel": lambda: t.GPT2Config(n_layer=1, n_embd=16, n_head=2, **TINY),
        "GPT2Model": lambda: t.GPT2Config(n_layer=1, n_embd=16, n_head=2, **TINY),
        "LlamaForCausalLM": lambda: t.LlamaConfig(
            num_hidden_layers=1, hidden_size=16, num_attention_heads=2, intermediate_size=32, **TINY
        ),
        "MistralForCausalLM": lambda: t.MistralConfig(
            num_hidden_layers=1,
            hidden_size=16,
            num_attention_heads=2,
            num_key_value_heads=1,
            intermediate_size=32,
            **TINY,
        ),
        "OPTForCausalLM": lambda: t.OPTConfig(
            num_hidden_layers=1,
            hidden_size=16,
            num_attention_heads=2,
            ffn_dim=32,
            word_embed_proj_dim=16,
            **TINY,
        ),
        "GPTNeoForCausalLM": lambda: t.GPTNeoConfig(
            num_layers=1, hidden_size=16, num_heads=2, attention_types=[[["global"], 1]], **TINY
        ),
        "BertForMaskedLM": lambda: t.BertConfig(
            num_hidden_layers=1, hidden_size=16, num_attention_heads=2, intermediate_size=32, **TINY
        ),
        "BertForSequenceClassification": lambda: t.BertConfig(
            num_hidden_layers=1, hidden_size=16, num_attention_heads=2, intermediate_size=32, **TINY
        ),
        "BertModel": lambda: t.BertConfig(
            num_hidden_layers=1, hidden_size=16, num_attention_heads=2, intermediate_size=32, **TINY
        ),
        "T5ForConditionalGeneration": lambda: t.T5Config(
            num_layers=1, d_model=16, d_ff=32, num_heads=2, d_kv=8, **TINY
        ),
    }
    return getattr(t, name)(configs[name]())


@pytest.mark.parametrize(
    ("name", "causal"),
    [
        ("GPT2LMHeadModel", True),  # not named ...ForCausalLM
        ("LlamaForCausalLM", True),
        ("MistralForCausalLM", True),
        ("OPTForCausalLM", True),
        ("GPTNeoForCausalLM", True),
        ("GPT2Model", False),  # the same network without its LM head
        ("BertForMaskedLM", False),
        ("BertForSequenceClassification", False),
        ("BertModel", False),
        ("T5ForConditionalGeneration", False),  # it can generate, but from an encoder's input
    ],
)
def test_causal_lms_are_what_transformers_registers_for_them(name, causal):
    model = _build(name)
    assert type(model).__name__ == name
    assert is_causal_lm_model(model) is causal, f"{name} should {'' if causal else 'not '}count"


def test_a_subclass_of_a_causal_lm_is_one():
    from transformers import GPT2LMHeadModel

    class MyGPT2(GPT2LMHeadModel):
        pass

    assert is_causal_lm_model(MyGPT2(_build("GPT2LMHeadModel").config))


def test_a_users_gpt2_folder_decomposes_with_kl_and_gets_lm_metrics(gpt2_store):
    folder, path = gpt2_store
    hf = load_hf_target(str(folder))
    assert hf.spec["model_class"] == "GPT2LMHeadModel" and hf.causal_lm
    store = FactorStore.open(path)
    assert store.target_spec["causal_lm"] is True
    assert {m: layout.kind for m, layout in store.modules.items()} == {
        "transformer.wte": "embedding",
        "transformer.h.0.mlp.c_fc": "conv1d",
        "lm_head": "linear",
    }
    assert set(store.modules) == set(GPT2_MODULES)
    m = store.metrics
    assert m["lm/ce_unrecovered_zero"] == pytest.approx(1.0)
    for key in ("lm/ce_target", "lm/kl_ci", "lm/kl_stoch", "lm/ce_unrecovered_ci"):
        assert key in m and m[key] == m[key], key  # present, not NaN
    with torch.no_grad():
        ids = hf.tokenizer("Call me Ishmael.", return_tensors="pt").input_ids
        assert hf.model(ids).logits.shape == (1, ids.shape[1], len(hf.tokenizer))
