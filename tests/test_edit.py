"""`spd export`: a target with chosen components subtracted from its weights equals the
ablation (ABLATE mask with the delta component) on the same inputs, loads without spd, and every
bad request is refused before any work."""

from __future__ import annotations

import json
import re
import shutil

import numpy as np
import pytest
import torch
from torch import nn

from services.cli import main
from spd_core.edit import (
    NOTE_JSON,
    NOTE_TEXT,
    EditError,
    check_selection,
    export_edited,
    load_edited_toy_target,
    removed_weight,
)
from spd_core.loading import load_component_model, load_decomposition
from spd_core.model.components import Components
from spd_core.queries import MaskSpec, ablated_outputs
from spd_core.store import FactorStore, ModuleLayout, StoreWriter

# Σ_c u_c v_cᵀ of these rows, by hand: u0 v0ᵀ = [[1,0,2],[2,0,4]], u1 v1ᵀ = [[0,0,0],[3,1,0]]
U = torch.tensor([[1.0, 2.0], [0.0, 1.0]])  # (k=2, d_out=2)
V = torch.tensor([[1.0, 0.0, 2.0], [3.0, 1.0, 0.0]])  # (k=2, d_in=3)
SUM = torch.tensor([[1.0, 0.0, 2.0], [5.0, 1.0, 4.0]])  # (d_out, d_in)


def _layers() -> dict[str, nn.Module]:
    from transformers.pytorch_utils import Conv1D

    torch.manual_seed(0)
    return {"linear": nn.Linear(3, 2), "conv1d": Conv1D(2, 3), "embedding": nn.Embedding(3, 2)}


def test_removed_weight_is_the_hand_sum_in_each_modules_own_orientation():
    assert torch.equal(removed_weight(U, V, "linear"), SUM)  # nn.Linear: (d_out, d_in)
    assert torch.equal(removed_weight(U, V, "conv1d"), SUM.T)  # Conv1D stores (d_in, d_out)
    assert torch.equal(removed_weight(U, V, "embedding"), SUM.T)  # (vocab = d_in, d_emb = d_out)
    for kind, layer in _layers().items():
        assert removed_weight(U, V, kind).shape == layer.weight.shape, kind


@pytest.mark.parametrize("kind", ["linear", "conv1d", "embedding"])
def test_an_edited_layer_equals_its_components_ablated_with_the_delta(kind):
    layer = _layers()[kind]
    comp = Components(layer, C=4, generator=torch.Generator().manual_seed(1))
    chosen = [0, 2]
    x = torch.tensor([[0, 2, 1]]) if kind == "embedding" else torch.randn(5, 3)
    mask = torch.ones(4)
    mask[chosen] = 0.0
    positions = x.shape if kind == "embedding" else x.shape[:-1]
    with torch.no_grad():
        expected = comp(x, mask=mask, delta_mask=torch.ones(positions))
        layer.weight.sub_(removed_weight(comp.U[chosen], comp.V[chosen], kind))
        torch.testing.assert_close(layer(x), expected, atol=1e-6, rtol=1e-6)


def test_selections_are_checked_against_the_store(harvest_toy_store):
    store = FactorStore.open(harvest_toy_store)
    assert check_selection(store, {"linear2": [3, 1, 3], "linear1": [0]}) == {
        "linear1": [0],
        "linear2": [1, 3],
    }
    cases = [
        ({}, "no components selected"),
        ({"linear1": []}, "no components selected"),
        ({"fc9": [1]}, r"'fc9' is not decomposed in .*; its modules are: linear1, linear2"),
        (
            {"linear1": [20, 2]},
            r"linear1 has 20 components \(indices 0 to 19\); 20 is out of range",
        ),
    ]
    for selection, message in cases:
        with pytest.raises(EditError, match=message):
            check_selection(store, selection)


def test_a_toy_export_equals_the_ablation_and_records_what_it_removed(harvest_toy_store, tmp_path):
    selection = {"linear1": [0, 3], "linear2": [1]}
    out = tmp_path / "edited"
    result = export_edited(harvest_toy_store, selection, out)
    edited = load_edited_toy_target(out)
    model, _ = load_component_model(harvest_toy_store)
    x = torch.rand(32, 5, generator=torch.Generator().manual_seed(0))
    spec = MaskSpec(mode="ablate", components=selection, use_delta=True)
    ablated = ablated_outputs(model, x, spec, "mse")
    with torch.no_grad():
        got = edited(x)
    torch.testing.assert_close(got, ablated.outputs[0], atol=1e-6, rtol=0)
    assert (got - ablated.target).abs().max() > 1e-3, "the edit changed nothing"

    note = json.loads((out / NOTE_JSON).read_text())
    store = FactorStore.open(harvest_toy_store)
    assert note["store"] == str(harvest_toy_store) and note["target"] == "tms-5-2"
    assert note["equals"]["components"] == selection and note["equals"]["use_delta"] is True
    first = note["removed"][0]
    assert (first["module"], first["components"], first["C"]) == ("linear1", [0, 3], 20)
    norms = np.linalg.norm(store.U("linear1", [0, 3]), axis=1) * np.linalg.norm(
        store.V("linear1", [0, 3]), axis=1
    )
    np.testing.assert_allclose(first["component_norms"], norms, rtol=1e-6)
    assert note == result.note.to_json()
    assert "| linear1 | linear | 0, 3 (of 20) |" in (out / NOTE_TEXT).read_text()


def test_the_out_folder_is_never_anything_but_an_earlier_export(harvest_toy_store, tmp_path):
    selection = {"linear1": [1]}
    busy = tmp_path / "busy"
    busy.mkdir()
    (busy / "mine.txt").write_text("keep me")
    with pytest.raises(EditError, match=r"exists and is not empty; .* --overwrite"):
        export_edited(harvest_toy_store, selection, busy)
    with pytest.raises(EditError, match=f"is not a folder `spd export` wrote .*{NOTE_JSON}"):
        export_edited(harvest_toy_store, selection, busy, overwrite=True)
    assert (busy / "mine.txt").read_text() == "keep me"
    with pytest.raises(EditError, match="lies in the store"):
        export_edited(harvest_toy_store, selection, harvest_toy_store / "edited")
    (tmp_path / "empty").mkdir()
    export_edited(harvest_toy_store, selection, tmp_path / "empty")
    export_edited(harvest_toy_store, {"linear2": [2]}, tmp_path / "empty", overwrite=True)
    note = json.loads((tmp_path / "empty" / NOTE_JSON).read_text())
    assert note["equals"]["components"] == {"linear2": [2]}
    assert sorted(p.name for p in tmp_path.iterdir()) == ["busy", "empty"]  # no temporary left


def test_a_gpt2_export_loads_with_plain_transformers_and_equals_the_ablation(gpt2_store, tmp_path):
    from transformers import AutoModelForCausalLM, AutoTokenizer

    folder, path = gpt2_store
    selection = {"transformer.wte": [0, 2], "transformer.h.0.mlp.c_fc": [1, 4], "lm_head": [3]}
    out = tmp_path / "edited-gpt2"
    note = export_edited(path, selection, out).note
    untied = {r.module: r.untied for r in note.removed}  # the first of the tied pair edited
    assert sorted(untied.values()) == [False, False, True]
    assert untied["lm_head"] != untied["transformer.wte"]
    edited = AutoModelForCausalLM.from_pretrained(out).eval()
    assert type(edited).__name__ == "GPT2LMHeadModel" and edited.config.tie_word_embeddings is False
    tokenizer = AutoTokenizer.from_pretrained(out)
    texts = ["Call me Ishmael. Some years ago", "Fellow-Citizens of the Senate and House"]
    dec = load_decomposition(path)
    ids = torch.tensor([tokenizer(t).input_ids[:8] for t in texts])
    assert ids.tolist() == [dec.tokenizer(t).input_ids[:8] for t in texts]
    spec = MaskSpec(mode="ablate", components=selection, use_delta=True)
    ablated = ablated_outputs(dec.model, ids, spec, "kl")
    with torch.no_grad():
        logits = edited(ids).logits
    torch.testing.assert_close(logits, ablated.outputs[0], atol=1e-5, rtol=0)
    assert (logits - ablated.target).abs().max() > 1e-3, "the edit changed nothing"
    # each edited module lost exactly its own components; the untied head lost only its own
    original = AutoModelForCausalLM.from_pretrained(folder)
    store = FactorStore.open(path)
    for module in ("lm_head", "transformer.wte"):
        U, V = (torch.from_numpy(f(module, selection[module])) for f in (store.U, store.V))
        removed = removed_weight(U, V, store.modules[module].kind)
        expected = original.get_submodule(module).weight - removed
        got = edited.get_submodule(module).weight
        torch.testing.assert_close(got, expected, atol=1e-6, rtol=0)


def _incomplete_store(path):
    writer = StoreWriter.create(
        path,
        modules={"fc": ModuleLayout(kind="linear", C=2, d_in=3, d_out=2)},
        config={"steps": 1},
        target_spec={"kind": "toy"},
    )
    writer.write_factor_rows("fc", "U", 0, torch.ones(2, 2))
    return path


def test_the_command_refuses_bad_requests_before_any_work(harvest_toy_store, tmp_path, capsys):
    out = str(tmp_path / "out")
    with pytest.raises(SystemExit) as stop:
        main(["export", str(harvest_toy_store), "--ablate", "linear1", "--out", out])
    assert stop.value.code == 2
    assert "'linear1': write MODULE:I,J" in capsys.readouterr().err
    cases = [
        (["--ablate", "lin:1"], "'lin' is not decomposed in .*; its modules are: linear1, linear2"),
        (["--ablate", "linear2:3,40"], "linear2 has 20 components .* 40 is out of range"),
    ]
    for extra, message in cases:
        assert main(["export", str(harvest_toy_store), *extra, "--out", out]) == 2
        err = capsys.readouterr().err
        assert err.startswith("spd export: error: ") and "Traceback" not in err
        assert re.search(message, err), err
    incomplete = str(_incomplete_store(tmp_path / "half.zarr"))
    assert main(["export", incomplete, "--ablate", "fc:0", "--out", out]) == 2
    assert "is incomplete" in capsys.readouterr().err
    assert not (tmp_path / "out").exists()


def test_the_command_writes_and_says_how_to_load(harvest_toy_store, tmp_path, capsys):
    store = tmp_path / "tms.zarr"
    shutil.copytree(harvest_toy_store, store)
    out = tmp_path / "edited"
    args = ["export", str(store), "--ablate", "linear1:1,2", "--ablate", "linear2:0"]
    assert main([*args, "--out", str(out)]) == 0
    printed = capsys.readouterr().out
    assert f"wrote {out}: a toy target, tms-5-2 edited" in printed
    assert "linear1: removed 2 of 20 components (1, 2)" in printed
    assert "load_edited_toy_target" in printed
    note = json.loads((out / NOTE_JSON).read_text())
    assert note["equals"]["components"] == {"linear1": [1, 2], "linear2": [0]}
    assert main([*args, "--out", str(out)]) == 2
    assert "--overwrite" in capsys.readouterr().err
    assert main([*args, "--out", str(out), "--overwrite"]) == 0
