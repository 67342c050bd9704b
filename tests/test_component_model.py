"""Component model identities: exact reconstruction with the delta, caching, routing, errors."""

import re

import pytest
import torch
from torch import nn

from spd_core.config import ModulePattern
from spd_core.model.component_model import ComponentModel, ModuleSelectionError
from spd_core.model.masks import ModuleMask


class Conv1D(nn.Module):
    """GPT-2 style linear: weight stored (d_in, d_out), y = x W + b."""

    def __init__(self, nf: int, nx: int):
        super().__init__()
        self.nf = nf
        self.weight = nn.Parameter(torch.randn(nx, nf))
        self.bias = nn.Parameter(torch.randn(nf))

    def forward(self, x):
        return x @ self.weight + self.bias


class TinyLM(nn.Module):
    def __init__(self, vocab: int = 11, d: int = 6):
        super().__init__()
        torch.manual_seed(0)
        self.wte = nn.Embedding(vocab, d)
        self.c_fc = Conv1D(8, d)
        self.head = nn.Linear(8, vocab)

    def forward(self, ids):
        return self.head(torch.relu(self.c_fc(self.wte(ids))))


def _all(C=4):
    return [ModulePattern(module_pattern=p, C=C) for p in ("wte", "c_fc", "head")]


def test_all_masks_one_with_full_delta_reproduces_target_exactly():
    lm = TinyLM()
    model = ComponentModel(lm, _all(), "mlp", [3])
    ids = torch.randint(0, 11, (2, 5))
    acts = model.prepare(ids)
    masks = {n: ModuleMask(mask=None, delta_mask=torch.ones(2, 5)) for n in model.module_names}
    out = model.masked_forward(acts, masks)
    torch.testing.assert_close(out, lm(ids), atol=1e-5, rtol=1e-5)


def test_full_delta_with_fresh_inputs_also_reproduces_target():
    """Without the clean-input shortcut (downstream modules see recomputed inputs)."""
    lm = TinyLM()
    model = ComponentModel(lm, _all(), "mlp", [3])
    ids = torch.randint(0, 11, (3, 4))
    acts = model.prepare(ids)
    # wte runs first, so c_fc and head see recomputed (not cached) inputs
    full = {n: ModuleMask(delta_mask=torch.ones(3, 4)) for n in model.module_names}
    torch.testing.assert_close(model.masked_forward(acts, full), lm(ids), atol=1e-5, rtol=1e-5)


def test_sum_of_subcomponents_plus_delta_equals_weight():
    lm = TinyLM()
    model = ComponentModel(lm, _all(), "mlp", [3])
    for name, w in [("wte", lm.wte.weight), ("c_fc", lm.c_fc.weight.T), ("head", lm.head.weight)]:
        comp = model.components_of(name)
        subcomponents = torch.einsum("co,ci->coi", comp.U, comp.V)  # (C, d_out, d_in)
        summed = subcomponents.sum(0)
        if comp.kind == "embedding":
            summed = summed.T
        torch.testing.assert_close(summed + comp.weight_delta(), w, atol=1e-6, rtol=1e-6)


def test_component_forward_matches_rank_one_sum_with_mask():
    lm = TinyLM()
    model = ComponentModel(lm, [ModulePattern(module_pattern="head", C=3)], "mlp", [3])
    comp = model.components_of("head")
    x = torch.randn(5, 8)
    mask = torch.tensor([1.0, 0.0, 0.5])
    manual = sum(mask[c] * (x @ comp.V[c]).unsqueeze(-1) * comp.U[c] for c in range(3))
    torch.testing.assert_close(comp(x, mask), manual + lm.head.bias, atol=1e-6, rtol=1e-6)


def test_clean_pass_caches_true_inputs_including_token_ids():
    lm = TinyLM()
    model = ComponentModel(lm, _all(), "mlp", [3])
    ids = torch.randint(0, 11, (2, 5))
    clean = model.clean_pass(ids)
    assert torch.equal(clean.inputs["wte"], ids)
    torch.testing.assert_close(clean.inputs["c_fc"], lm.wte(ids))
    assert clean.order == ["wte", "c_fc", "head"]
    torch.testing.assert_close(clean.products["head"] + lm.head.bias, lm(ids))


def test_routing_replaces_only_routed_positions():
    lm = TinyLM()
    model = ComponentModel(lm, [ModulePattern(module_pattern="head", C=3)], "mlp", [3])
    ids = torch.randint(0, 11, (4, 2))
    acts = model.prepare(ids)
    routing = torch.tensor([[True, False]] * 4)
    zeroed = {"head": ModuleMask(mask=torch.zeros(3), routing=routing)}
    out = model.masked_forward(acts, zeroed)
    torch.testing.assert_close(out[:, 0], lm.head.bias.expand(4, -1))
    torch.testing.assert_close(out[:, 1], lm(ids)[:, 1])


def _everywhere_then_select(comp, mm, x, inner, product, target_y):
    """The plain definition: the components on every position, then the routed ones kept."""
    y = comp(x, mm.mask, mm.delta_mask, inner=inner, target_product=product)
    return torch.where(mm.routing.unsqueeze(-1), y, target_y)


def test_components_run_only_where_routed_with_the_same_outputs_and_gradients(monkeypatch):
    lm = TinyLM()
    model = ComponentModel(lm, _all(), "mlp", [3])
    gen = torch.Generator().manual_seed(3)
    ids = torch.randint(0, 11, (5, 7), generator=gen)
    masks = {
        "wte": ModuleMask(torch.rand(5, 7, 4, generator=gen), torch.rand(5, 7, generator=gen)),
        "c_fc": ModuleMask(torch.rand(4, generator=gen), None),  # one mask for every position
        "head": ModuleMask(torch.rand(5, 7, 4, generator=gen), torch.rand(5, 7, generator=gen)),
    }
    routings = {
        "wte": torch.rand(5, 7, generator=gen) < 0.5,
        "c_fc": torch.rand(5, 7, generator=gen) < 0.5,
        "head": torch.ones(5, 7, dtype=torch.bool),  # every position routed
    }
    masks = {n: ModuleMask(m.mask, m.delta_mask, routings[n]) for n, m in masks.items()}
    weights = torch.randn(5, 7, 11, generator=gen)

    def output_and_grads():
        out = model.masked_forward(model.prepare(ids), masks)  # a fresh graph each time
        params = model.component_parameters()
        return out.detach(), torch.autograd.grad((out * weights).sum(), params)

    out, grads = output_and_grads()
    monkeypatch.setattr(
        "spd_core.model.component_model._on_routed_positions", _everywhere_then_select
    )
    ref_out, ref_grads = output_and_grads()
    torch.testing.assert_close(out, ref_out, rtol=1e-6, atol=1e-6)
    for got, want in zip(grads, ref_grads, strict=True):
        torch.testing.assert_close(got, want, rtol=1e-5, atol=1e-6)
    assert not torch.allclose(out, lm(ids))  # the masks did change the output


def test_masked_forward_leaves_target_untouched_afterwards():
    lm = TinyLM()
    model = ComponentModel(lm, _all(), "mlp", [3])
    ids = torch.randint(0, 11, (2, 3))
    before = lm(ids)
    model.masked_forward(model.prepare(ids), {"head": ModuleMask(mask=torch.zeros(4))})
    torch.testing.assert_close(lm(ids), before)
    assert "forward" not in lm.head.__dict__


def test_target_is_frozen_and_bias_never_trained():
    lm = TinyLM()
    model = ComponentModel(lm, _all(), "mlp", [3])
    assert not any(p.requires_grad for p in lm.parameters())
    trainable = {n for n, p in model.named_parameters() if p.requires_grad}
    assert all(n.startswith(("components.", "ci_fns.")) for n in trainable)
    assert not any("bias" in n for n in trainable if n.startswith("components."))


def test_pattern_matching_nothing_names_the_pattern():
    with pytest.raises(
        ModuleSelectionError, match=re.escape("'mlp.*' matched nothing; modules include: wte")
    ):
        ComponentModel(TinyLM(), [ModulePattern(module_pattern="mlp.*", C=2)])


def test_module_matched_twice_is_an_error():
    patterns = [ModulePattern(module_pattern="head", C=2), ModulePattern(module_pattern="h*", C=3)]
    with pytest.raises(ModuleSelectionError, match="more than one pattern"):
        ComponentModel(TinyLM(), patterns)


def test_unsupported_module_type_is_an_error():
    model = nn.Sequential(nn.Linear(2, 2), nn.LayerNorm(2))
    with pytest.raises(ModuleSelectionError, match="LayerNorm; SPD decomposes"):
        ComponentModel(model, [ModulePattern(module_pattern="1", C=2)])


def test_embedding_needs_mlp_ci_function():
    with pytest.raises(ModuleSelectionError, match="embedding: it needs ci_fn_type 'mlp'"):
        ComponentModel(TinyLM(), [ModulePattern(module_pattern="wte", C=2)], "vector_mlp")


def test_init_scales():
    lin = nn.Linear(400, 300)
    wrapper = nn.Sequential(lin)
    model = ComponentModel(wrapper, [ModulePattern(module_pattern="0", C=200)])
    comp = model.components_of("0")
    assert comp.V.std().item() == pytest.approx(1 / 400**0.5, rel=0.05)
    assert comp.U.std().item() == pytest.approx(1 / 200**0.5, rel=0.05)


def test_resume_from_cached_block_gives_the_same_masked_output():
    """ResidualMLP skips the embedding in masked forwards; outputs equal the full forward."""
    from spd_core.targets.resid_mlp import ResidualMLP

    target = ResidualMLP(n_features=6, d_embed=8, d_mlp=3, n_layers=2)
    patterns = [ModulePattern(module_pattern="layers.*.mlp_*", C=4)]
    model = ComponentModel(target, patterns, "mlp", [3])
    x = torch.randn(5, 6)
    acts = model.prepare(x)
    masks = {"layers.1.mlp_out": ModuleMask(mask=torch.rand(5, 4), delta_mask=torch.rand(5))}
    resumed = model.masked_forward(acts, masks)
    target.resume_from = lambda name, inputs: None  # instance attribute: force the full forward
    full = model.masked_forward(acts, masks)
    torch.testing.assert_close(resumed, full, atol=1e-5, rtol=1e-5)
    assert not torch.allclose(full, target(x), atol=1e-3)  # the mask did change the output
