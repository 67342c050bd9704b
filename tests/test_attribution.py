"""spd_core.attribution: attribution graphs pinned on a hand-computed two-layer case, against
central finite differences on a tiny Llama (cross-position attention paths, selected positions,
per-position activity, the loss output), pruning, and the errors of bad specs."""

from __future__ import annotations

from collections.abc import Callable

import numpy as np
import pytest
import torch
from torch import Tensor, nn

from spd_core.attribution import (
    AttributionError,
    AttributionGraph,
    AttributionSpec,
    compute_attributions,
    prune_edges,
)
from spd_core.config import ModulePattern
from spd_core.model.component_model import ComponentModel


def _raise_ci(model: ComponentModel, bias: float) -> None:
    """Set every CI function's output bias, so that fresh CI functions give CI near `bias`."""
    with torch.no_grad():
        for name, p in model.ci_fns.named_parameters():
            if name.endswith(f"biases.{len(model.ci_fn_hidden_dims)}"):
                p.fill_(bias)


def _dense(graph: AttributionGraph) -> dict[tuple, float]:
    """{(source module, component, target module or None, component): attribution}."""
    out = {}
    for s, t, v in zip(graph.edge_sources, graph.edge_targets, graph.attributions, strict=True):
        a, b = graph.nodes[s], graph.nodes[t]
        out[(a.module, a.component, b.module, b.component)] = float(v)
    return out


@pytest.fixture
def two_layer_model(two_layer) -> ComponentModel:
    patterns = [ModulePattern(module_pattern="fc1", C=3), ModulePattern(module_pattern="fc2", C=2)]
    model = ComponentModel(two_layer, patterns, generator=torch.Generator().manual_seed(1))
    _raise_ci(model, 0.5)
    return model


def test_two_layer_edges_equal_the_hand_computed_formula(two_layer_model, two_layer) -> None:
    # fc1 component s -> fc2 component t: g_t · Σ_j 1[z_j > 0] U1[s, j] V2[t, j] · a_s, where z is
    # fc1's pre-ReLU output and a_s = x · V1[s]; fc2 component t -> logit k: U2[t, k] · a_t.
    # fc1 -> logit is cut (its only path runs through fc2, a node of the graph).
    x = torch.randn(1, 3, generator=torch.Generator().manual_seed(2))
    graph = compute_attributions(
        two_layer_model, x, AttributionSpec(threshold=0.0, output="logit", logit_index=1)
    )
    with torch.no_grad():
        ci = two_layer_model.causal_importances(two_layer_model.prepare(x)).lower
        c1, c2 = two_layer_model.components_of("fc1"), two_layer_model.components_of("fc2")
        z = two_layer.fc1(x)[0]
        a1 = x[0] @ c1.V.T
        a2 = torch.relu(z) @ c2.V.T
        expected = {
            ("fc1", s, "fc2", t): float(
                ci["fc2"][0, t] * ((z > 0) * c1.U[s] * c2.V[t]).sum() * a1[s]
            )
            for s in range(3)
            for t in range(2)
        }
        expected |= {("fc2", t, None, 1): float(c2.U[t, 1] * a2[t]) for t in range(2)}
    assert [(n.module, n.component) for n in graph.nodes] == [
        ("fc1", 0),
        ("fc1", 1),
        ("fc1", 2),
        ("fc2", 0),
        ("fc2", 1),
        (None, 1),
    ]
    got = _dense(graph)
    assert set(got) == set(expected), "fc1 -> output must be cut by fc2"
    for key, value in expected.items():
        assert got[key] == pytest.approx(value, rel=1e-5, abs=1e-7), key
    magnitudes = np.abs(graph.attributions)
    assert (np.diff(magnitudes) <= 0).all(), "edges must come strongest first"


# ---------------------------------------------------------------------------- finite differences

LLAMA_MODULES = "model.layers.*.*.*_proj"


def _float64_rms_norm(norm: nn.Module) -> Callable[[Tensor], Tensor]:
    def forward(h: Tensor) -> Tensor:
        return (
            norm.weight * h * torch.rsqrt(h.pow(2).mean(-1, keepdim=True) + norm.variance_epsilon)
        )

    return forward


@pytest.fixture(scope="module")
def llama() -> ComponentModel:
    """A random 2-layer Llama (float64; CI functions float32) with every projection decomposed, C = 3."""
    from transformers import LlamaConfig, LlamaForCausalLM

    torch.manual_seed(0)
    config = LlamaConfig(
        vocab_size=24,
        hidden_size=8,
        intermediate_size=12,
        num_hidden_layers=2,
        num_attention_heads=2,
        num_key_value_heads=2,
        max_position_embeddings=16,
    )
    target = LlamaForCausalLM(config).double()
    for module in target.modules():  # Llama's RMSNorm rounds to float32; keep float64 throughout
        if type(module).__name__ == "LlamaRMSNorm":
            module.forward = _float64_rms_norm(module)
    patterns = [ModulePattern(module_pattern=LLAMA_MODULES, C=3)]
    model = ComponentModel(
        target, patterns, output_attr="logits", generator=torch.Generator().manual_seed(3)
    ).double()
    model.ci_fns.float()  # CI functions read float32 inputs; CI values are constants here
    _raise_ci(model, 0.5)
    return model


def _finite_difference_graph(
    model: ComponentModel,
    x: Tensor,
    positions: list[int],
    threshold: float,
    output: Callable[[Tensor], Tensor],
    eps: float = 1e-5,
) -> dict[tuple, float]:
    """The definition evaluated by perturbation: every decomposed module's output frozen at its
    clean value, one module's output moved by ±eps · U[s] at one position q, and the change of
    every later module's Σ_p g_t(p) (x_t(p) · V[t]) (and of the output) measured, times a_s(q)."""
    names = model.module_names
    named = dict(model.target.named_modules())
    with torch.no_grad():
        acts = model.prepare(x)
        ci = {
            m: g.reshape(-1, g.shape[-1]) for m, g in model.causal_importances(acts).lower.items()
        }
        bias = {m: model.components_of(m).bias for m in names}
        base = {m: acts.clean.products[m] + (0 if bias[m] is None else bias[m]) for m in names}
        active = {m: ci[m] > threshold for m in names}
        inner = {
            m: acts.clean.inputs[m].reshape(-1, acts.clean.inputs[m].shape[-1])
            @ model.components_of(m).V.T
            for m in names
        }

    def run(module: str, s: int, q: int, delta: float) -> tuple[dict[str, Tensor], Tensor]:
        seen: dict[str, Tensor] = {}

        def hook(name: str):
            def f(mod: nn.Module, args: tuple, out: Tensor) -> Tensor:
                seen[name] = args[0].reshape(-1, args[0].shape[-1])
                frozen = base[name].clone()
                if name == module:
                    flat = frozen.view(-1, frozen.shape[-1])
                    flat[q] += delta * model.components_of(name).U[s]
                return frozen

            return f

        handles = [named[m].register_forward_hook(hook(m)) for m in names]
        try:
            with torch.no_grad():
                logits = model.target(x).logits
        finally:
            for h in handles:
                h.remove()
        targets = {
            m: ((seen[m] @ model.components_of(m).V.T) * ci[m] * active[m])[positions].sum(0)
            for m in names
        }
        return targets, output(logits)

    order = acts.clean.order
    found: dict[tuple, float] = {}
    for src in order:
        for s in range(model.C[src]):
            for q in positions:
                if not active[src][q, s]:
                    continue
                up_t, up_y = run(src, s, q, eps)
                down_t, down_y = run(src, s, q, -eps)
                a = float(inner[src][q, s])
                for tgt in order[order.index(src) + 1 :]:
                    slope = (up_t[tgt] - down_t[tgt]) / (2 * eps) * a
                    for t, value in enumerate(slope.tolist()):
                        key = (src, s, tgt, t)
                        found[key] = found.get(key, 0.0) + value
                key = (src, s, None, -1)
                found[key] = found.get(key, 0.0) + float((up_y - down_y) / (2 * eps)) * a
    return {k: v for k, v in found.items() if abs(v) > 1e-9}


def test_llama_attributions_equal_finite_differences(llama) -> None:
    x = torch.tensor([[3, 17, 5, 9, 11]])
    positions, threshold = [1, 2, 4], 0.45

    def loss(logits: Tensor) -> Tensor:  # next-token CE at the selected positions with a next one
        return nn.functional.cross_entropy(logits[0, [1, 2]], x[0, [2, 3]], reduction="sum")

    spec = AttributionSpec(threshold=threshold, positions=positions, output="loss")
    graph = compute_attributions(llama, x, spec)
    expected = _finite_difference_graph(llama, x, positions, threshold, loss)
    got = _dense(graph)
    assert len(expected) > 100, "the case must exercise many edges"
    assert any(k[0].endswith("k_proj") and k[2].endswith("o_proj") for k in expected)
    missing = {k: v for k, v in expected.items() if k not in got and abs(v) > 1e-6}
    assert not missing, f"edges the finite differences find but the graph lacks: {missing}"
    for key, value in got.items():
        assert value == pytest.approx(expected.get(key, 0.0), rel=1e-6, abs=1e-8), key
    inactive = [n for n in graph.nodes if n.module is not None and n.max_ci <= threshold]
    assert not inactive, "only components active at a selected position are nodes"


# ---------------------------------------------------------------------------- pruning


def test_prune_edges_keeps_the_strongest_with_a_stated_tie_rule() -> None:
    sources = np.array([0, 1, 2, 0, 1, 3])
    targets = np.array([5, 5, 5, 4, 4, 4])
    values = np.array([0.5, -2.0, 0.0, -0.5, 1.0, 0.1])
    assert prune_edges(sources, targets, values).tolist() == [1, 4, 3, 0, 5]  # 0.0 dropped
    assert prune_edges(sources, targets, values, max_edges=3).tolist() == [1, 4, 3]
    assert prune_edges(sources, targets, values, min_abs=0.5).tolist() == [1, 4, 3, 0]
    assert prune_edges(sources, targets, values, max_edges=1, min_abs=5.0).tolist() == []


def test_pruned_graph_is_the_head_of_the_full_one(llama) -> None:
    x = torch.tensor([[3, 17, 5, 9, 11]])
    full = compute_attributions(llama, x, AttributionSpec(threshold=0.0, output="loss"))
    top = compute_attributions(
        llama, x, AttributionSpec(threshold=0.0, output="loss", max_edges=10)
    )
    assert top.n_candidate_edges == full.n_candidate_edges == len(full.attributions) > 10
    assert np.array_equal(top.attributions, full.attributions[:10])
    assert np.array_equal(top.edge_sources, full.edge_sources[:10])
    floor = float(np.abs(full.attributions[20]))
    strong = compute_attributions(
        llama, x, AttributionSpec(threshold=0.0, output="loss", min_abs_attribution=floor)
    )
    assert (np.abs(strong.attributions) >= floor).all()
    assert len(strong.attributions) == int((np.abs(full.attributions) >= floor).sum())


def test_targets_split_over_several_backwards_give_the_same_graph(llama, monkeypatch) -> None:
    from spd_core.attribution import compute

    x = torch.tensor([[3, 17, 5, 9, 11]])
    spec = AttributionSpec(threshold=0.3, output="loss")
    whole = compute_attributions(llama, x, spec)  # C = 3: one backward per target module
    monkeypatch.setattr(compute, "ROWS_PER_BACKWARD", 2)
    split = compute_attributions(llama, x, spec)
    assert np.array_equal(split.edge_sources, whole.edge_sources)
    assert np.array_equal(split.edge_targets, whole.edge_targets)
    np.testing.assert_allclose(split.attributions, whole.attributions, rtol=1e-6)


# ---------------------------------------------------------------------------- bad specs

BAD_SPECS = [
    (
        {"sources": ["model.layers.9.mlp.up_proj"]},
        "source module 'model.layers.9.mlp.up_proj' is not decomposed",
    ),
    ({"targets": ["model.layers.0.self_attn.q_proj"]}, "does not run after any source module"),
    (
        {"sources": ["model.layers.1.mlp.up_proj"], "targets": ["model.layers.0.mlp.down_proj"]},
        "target module 'model.layers.0.mlp.down_proj' does not run after any source",
    ),
    ({"positions": [5]}, r"position 5 is out of range: this input has 5 position\(s\), 0..4"),
    ({"output": "logit", "logit_index": 24}, "logit index 24 is out of range.*24 entries"),
    ({"output": "loss", "positions": [4]}, "the loss needs a position with a next token"),
]


@pytest.mark.parametrize(("fields", "message"), BAD_SPECS)
def test_bad_specs_are_refused_with_the_reason(llama, fields, message) -> None:
    x = torch.tensor([[3, 17, 5, 9, 11]])
    with pytest.raises(AttributionError, match=message):
        compute_attributions(llama, x, AttributionSpec(threshold=0.0, **fields))
