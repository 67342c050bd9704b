"""Real packaged models (SmolLM2-135M, all-MiniLM-L6-v2): loading, bad input, and short
decompositions stored, reloaded and queried with text."""

from __future__ import annotations

import json
from pathlib import Path

import pytest
import torch
import yaml

from services.cli import main
from spd_core.config import ConfigError, ModulePattern, config_from_dict
from spd_core.eval.metrics.lm_masks import next_token_ce
from spd_core.hf.loading import load_hf_target
from spd_core.hf.packaged import HFModelError
from spd_core.loading import load_decomposition
from spd_core.model.component_model import ModuleSelectionError, select_modules
from spd_core.store import FactorStore
from spd_core.task.hf import hf_task
from spd_core.text.contexts import component_importances
from spd_core.text.importances import text_importances, token_importances
from spd_core.text.tokens import TextInputError, check_token_ids, encode_text
from spd_core.text.windows import eval_windows
from spd_core.train.single_process import decompose
from tests.hf_configs import tiny_hf_config

CPU = torch.device("cpu")


def test_smollm2_loads_from_its_gguf_and_knows_the_capital_of_france(smollm2):
    ids = smollm2.tokenizer("The capital of France is", return_tensors="pt").input_ids
    with torch.no_grad():
        top = smollm2.model(ids).logits[0, -1].argmax().item()
    assert smollm2.tokenizer.decode([top]) == " Paris"
    spec = smollm2.spec
    assert spec["model_class"] == "LlamaForCausalLM" and spec["causal_lm"] is True
    assert (spec["context_length"], spec["vocab_size"]) == (8192, 49152)
    assert Path(spec["converted"], "weights.pt").is_file() and len(spec["gguf_sha256"]) == 64
    assert not any(p.requires_grad for p in smollm2.model.parameters())


def test_bad_module_patterns_name_the_problem(smollm2):
    with pytest.raises(
        ModuleSelectionError, match=r"'model.h.\*.mlp' matched nothing.*model.embed_tokens"
    ):
        select_modules(smollm2.model, [ModulePattern(module_pattern="model.h.*.mlp", C=4)])
    with pytest.raises(ModuleSelectionError, match=r"is a LlamaRMSNorm; SPD decomposes nn.Linear"):
        select_modules(smollm2.model, [ModulePattern(module_pattern="model.layers.0.*norm", C=4)])


def test_models_are_never_looked_up_on_a_hub():
    with pytest.raises(HFModelError, match="never downloads models from a hub"):
        load_hf_target("openai-community/gpt2")


def test_text_longer_than_the_context_and_unknown_ids_are_rejected(minilm):
    ids = encode_text(minilm.tokenizer, "hello world", minilm.context_length)
    assert ids == [101, 7592, 2088, 102]
    with pytest.raises(TextInputError, match=r"is 602 tokens long but the model's context is 512"):
        encode_text(minilm.tokenizer, "word " * 600, minilm.context_length)
    with pytest.raises(TextInputError, match=r"unknown token ids \[-1, 30522\]"):
        check_token_ids([5, 30522, -1], minilm.spec["vocab_size"], 512)
    with pytest.raises(TextInputError, match="513 tokens exceed the model's context of 512"):
        check_token_ids(torch.zeros(1, 513, dtype=torch.int64), 30522, 512)
    assert check_token_ids([[1, 2]], 30522, 512).tolist() == [[1, 2]]


def test_task_rejects_windows_beyond_the_context_and_kl_without_logits():
    modules = {"encoder.layer.0.intermediate.dense": 4}
    long = tiny_hf_config(
        "all-minilm-l6-v2", modules, pretrained_model_output_attr="last_hidden_state"
    )
    long["target"]["data"]["seq_len"] = 600
    with pytest.raises(ConfigError, match="600 tokens exceed the model's context of 512"):
        hf_task(config_from_dict(long), CPU)
    kl = tiny_hf_config(
        "all-minilm-l6-v2", modules, pretrained_model_output_attr="last_hidden_state"
    )
    with pytest.raises(ConfigError, match="BertModel is not a causal LM"):
        hf_task(config_from_dict(kl), CPU)


def test_a_restarted_task_skips_the_windows_of_the_steps_already_done():
    modules = {"encoder.layer.0.intermediate.dense": 4}
    cfg = tiny_hf_config(
        "all-minilm-l6-v2",
        modules,
        pretrained_model_output_attr="last_hidden_state",
        output_loss_type="mse",
    )
    config = config_from_dict(cfg)
    first = hf_task(config, CPU)
    batches = [first.batch_fn(3, None) for _ in range(3)]
    restarted = hf_task(config, CPU)
    restarted.skip_batches(2, 3)
    assert torch.equal(restarted.batch_fn(3, None), batches[2])
    assert not torch.equal(batches[2], batches[0])


def test_one_smollm2_layer_decomposed_stored_reloaded_and_queried_with_text(tmp_path):
    module = "model.layers.3.mlp.down_proj"
    config = config_from_dict(tiny_hf_config("smollm2-135m", {module: 6}, eval_batch_size=2))
    result = decompose(config, hf_task(config, CPU), out=tmp_path / "smol.zarr")

    store = FactorStore.open(tmp_path / "smol.zarr")
    assert store.target_spec["kind"] == "hf" and store.target_spec["model"] == "smollm2-135m"
    m = store.metrics
    assert m["lm/ce_unrecovered_zero"] == pytest.approx(1.0)
    assert m["l0/total"] == pytest.approx(m[f"l0/{module}"])  # one module: totals agree
    for key in ("lm/ce_unrecovered_ci", "lm/ce_unrecovered_stoch", "lm/kl_ci", "lm/kl_stoch"):
        assert key in m and m[key] == m[key]  # present, not NaN
    # evaluation reads the held-out windows: the target's CE on them, recomputed here
    dec = load_decomposition(store)
    held_out = eval_windows(dec.tokenizer, config.target.data, 2)
    with torch.no_grad():
        ce = next_token_ce(dec.model.target(held_out).logits, held_out).item()
    assert m["lm/ce_target"] == pytest.approx(ce, rel=1e-5)

    comp, again = result.model.components_of(module), dec.model.components_of(module)
    assert torch.equal(comp.U, again.U) and torch.equal(comp.V, again.V)
    got = text_importances(dec.model, dec.tokenizer, "Call me Ishmael.", dec.target_spec)
    assert got.tokens[:2] == ["Call", " me"] and got.importances[module].shape == (len(got.ids), 6)
    expected = token_importances(result.model, torch.tensor([got.ids]))[module][0]
    torch.testing.assert_close(got.importances[module], expected)
    assert ((expected >= 0) & (expected <= 1)).all()


def test_minilm_from_the_cli_then_inspect_a_component(tmp_path, capsys):
    module = "encoder.layer.0.intermediate.dense"
    cfg = tiny_hf_config("all-minilm-l6-v2", {module: 5}, output_loss_type="mse")
    cfg["pretrained_model_output_attr"] = "last_hidden_state"
    path = tmp_path / "minilm.yaml"
    path.write_text(yaml.safe_dump(cfg))
    store = tmp_path / "minilm.zarr"
    assert main(["decompose", str(path), "--out", str(store), "--quiet"]) == 0
    capsys.readouterr()
    assert main(["inspect", str(store)]) == 0
    table = capsys.readouterr().out
    assert "target        all-minilm-l6-v2 (hf)" in table and "l0/total" in table
    args = ["inspect", str(store), "--json", "--component", f"{module}:2", "--top", "3"]
    assert main([*args, "--windows", "4"]) == 0
    report = json.loads(capsys.readouterr().out)["component"]
    contexts = report["contexts"]
    assert len(contexts) == 3 and report["module"] == module and report["component"] == 2
    values = [c["importance"] for c in contexts]
    assert values == sorted(values, reverse=True)
    dec = load_decomposition(store)
    windows = eval_windows(dec.tokenizer, dec.config.target.data, 4)
    ci = component_importances(dec.model, windows, module, 2)
    assert values[0] == pytest.approx(ci.max().item())
    top = contexts[0]
    assert dec.tokenizer.decode([windows[top["window"], top["position"]]]) == top["token"]


def test_cli_errors_for_an_unfetched_corpus_and_a_bad_pattern(tmp_path, monkeypatch, capsys):
    monkeypatch.setenv("SPD_CACHE_DIR", str(tmp_path / "empty-cache"))
    cfg = tiny_hf_config("all-minilm-l6-v2", {"encoder.layer.0.intermediate.dense": 4})
    cfg.update(output_loss_type="mse", pretrained_model_output_attr="last_hidden_state")
    cfg["target"]["data"]["corpus"] = "moby-dick"
    path = tmp_path / "c.yaml"
    path.write_text(yaml.safe_dump(cfg))
    assert main(["decompose", str(path), "--out", str(tmp_path / "x.zarr")]) == 2
    assert "`spd data fetch moby-dick`" in capsys.readouterr().err
    cfg["module_info"] = [{"module_pattern": "encoder.layer.*.mlp", "C": 4}]
    path.write_text(yaml.safe_dump(cfg))
    assert main(["decompose", str(path), "--out", str(tmp_path / "x.zarr")]) == 2
    err = capsys.readouterr().err
    assert "'encoder.layer.*.mlp' matched nothing" in err and "Traceback" not in err


def test_a_store_whose_local_model_is_gone_says_so(tmp_path):
    from spd_core.store import ModuleLayout, StoreError, StoreWriter

    gone = str(tmp_path / "deleted-model")
    writer = StoreWriter.create(
        tmp_path / "s.zarr",
        modules={"fc": ModuleLayout(kind="linear", C=2, d_in=3, d_out=2)},
        config={"steps": 1},
        target_spec={"kind": "hf", "model": gone, "source": gone, "model_class": "BertModel"},
    )
    writer.write_factor_rows("fc", "U", 0, torch.ones(2, 2))
    writer.write_factor_rows("fc", "V", 0, torch.ones(2, 3))
    writer.mark_complete()
    with pytest.raises(StoreError, match=r"cannot rebuild its target: model '.*deleted-model'"):
        load_decomposition(tmp_path / "s.zarr")
