"""Global CI functions (one network gives every module's CIs): pinned on hand-computed values,
wired through the component model, trained, stored, reloaded and resumed; bad combinations are
refused before any work."""

from __future__ import annotations

import math
import shutil
from pathlib import Path

import numpy as np
import pytest
import torch
from torch.nn import functional as F

from services.cli import main
from services.train.job import JobOptions, run_job
from spd_core.config import Config, ConfigError, config_from_dict
from spd_core.loading import load_component_model, load_decomposition
from spd_core.losses import LossContext, compute_losses, step_context
from spd_core.model.component_model import ComponentModel
from spd_core.model.global_ci_functions import GlobalSharedTransformer
from spd_core.presets import resolve_config
from spd_core.store import FactorStore, StoreError, StoreWriter
from spd_core.targets.resid_mlp import ResidualMLP
from spd_core.task import DecompositionTask
from spd_core.task.toy import toy_task
from spd_core.train.run import WorkerPlan, run_worker
from spd_core.train.single_process import decompose
from spd_core.train.step import make_optimizer

TRANSFORMER = {"d_model": 4, "n_blocks": 1, "n_heads": 2, "mlp_hidden_dims": [3]}


def _config(**fields) -> Config:
    base = {
        "module_info": [{"module_pattern": "fc*", "C": 2}],
        "loss_metric_configs": [
            {"classname": "ImportanceMinimalityLoss", "coeff": 1e-3, "pnorm": 1.0},
            {"classname": "StochasticReconLoss", "coeff": 1.0},
        ],
        "batch_size": 8,
        "steps": 10,
    }
    return config_from_dict({**base, **fields})


# ----------------------------------------------------------------------------- by hand


def test_global_shared_mlp_without_hidden_layer_by_hand():
    """Module 0 (C=1) and 1 (C=2) read [x; h] through one linear map z = W [x; h] + b."""
    net = torch.nn.Sequential(torch.nn.Linear(2, 2), torch.nn.Linear(2, 1))
    with torch.no_grad():
        net[0].weight.copy_(torch.tensor([[1.0, 1.0], [0.0, -1.0]]))
        net[0].bias.copy_(torch.tensor([0.5, 0.0]))
    patterns = _config(
        module_info=[{"module_pattern": "0", "C": 1}, {"module_pattern": "1", "C": 2}]
    )
    model = ComponentModel(net, patterns.module_info, "global_shared_mlp", [])
    (layer,) = model.global_ci_fn.mlp.layers
    with torch.no_grad():
        layer.weight.copy_(
            torch.tensor([[0.1, 0.0, 0.0, 0.0], [0.0, 0.2, 0.1, 0.0], [0.0, 0.0, 0.0, 0.5]])
        )
        layer.bias.copy_(torch.tensor([0.3, 0.85, 0.7]))
    x = torch.tensor([[1.0, 2.0], [0.0, 0.0]])
    # row 0: h = [1+2+0.5, -2] = [3.5, -2]; z = [0.1+0.3, 0.4+0.35+0.85, -1+0.7] = [0.4, 1.6, -0.3]
    # row 1 (x = 0, not skipped): h = [0.5, 0]; z = [0.3, 0.05+0.85, 0.7] = [0.3, 0.9, 0.7]
    ci = model.causal_importances(model.prepare(x))
    torch.testing.assert_close(ci.lower["0"], torch.tensor([[0.4], [0.3]]))
    torch.testing.assert_close(ci.lower["1"], torch.tensor([[1.0, 0.0], [0.9, 0.7]]))
    # leaky_hard upper: 1 + 0.01 (1.6 − 1) = 1.006 above 1, 0 below 0
    torch.testing.assert_close(ci.upper["1"], torch.tensor([[1.006, 0.0], [0.9, 0.7]]))
    assert {id(p) for p in model.ci_parameters()} == {id(layer.weight), id(layer.bias)}
    optimised = {id(p) for g in make_optimizer(model, 1e-3).param_groups for p in g["params"]}
    assert {id(layer.weight), id(layer.bias)} <= optimised
    assert len(model.ci_fns) == 0


def _rms(v: torch.Tensor) -> torch.Tensor:
    return v / torch.sqrt((v**2).mean(-1, keepdim=True) + torch.finfo(v.dtype).eps)


def _plain_transformer(fn: GlobalSharedTransformer, xs: list[torch.Tensor]) -> torch.Tensor:
    """One sequence (T, ·) through the block written out position by position and head by head;
    RoPE with d_head = 2 rotates the one pair of position p by the angle p·base⁰ = p."""
    (block,) = fn.blocks
    att = block.attn
    r = torch.cat([_rms(x) for x in xs], -1) @ fn.project_in.weight.T + fn.project_in.bias
    u = _rms(r)
    q, k, v = u @ att.q.weight.T, u @ att.k.weight.T, u @ att.v.weight.T
    T, heads = r.shape[0], []
    for h in range(2):
        cols = slice(2 * h, 2 * h + 2)

        def rot(t, p):
            c, s = math.cos(p), math.sin(p)
            return torch.stack([t[0] * c - t[1] * s, t[1] * c + t[0] * s])

        out = []
        for t in range(T):
            scores = torch.stack(
                [rot(q[t, cols], t) @ rot(k[s, cols], s) / math.sqrt(2) for s in range(T)]
            )
            w = torch.exp(scores) / torch.exp(scores).sum()
            out.append(sum(w[s] * v[s, cols] for s in range(T)))
        heads.append(torch.stack(out))
    r = r + torch.cat(heads, -1) @ att.o.weight.T
    first, second = block.mlp.layers
    r = r + F.gelu(_rms(r) @ first.weight.T + first.bias) @ second.weight.T + second.bias
    return r @ fn.head.weight.T + fn.head.bias


def test_global_transformer_equals_the_step_by_step_computation():
    torch.manual_seed(0)
    net = torch.nn.Sequential(torch.nn.Linear(3, 2), torch.nn.ReLU(), torch.nn.Linear(2, 2))
    config = _config(
        module_info=[{"module_pattern": p, "C": 2} for p in ("0", "2")],
        ci_fn_type="global_shared_transformer",
        ci_transformer=TRANSFORMER,
    )
    model = ComponentModel(
        net,
        config.module_info,
        config.ci_fn_type,
        sigmoid_type="hard",
        ci_transformer=config.ci_transformer,
        generator=torch.Generator().manual_seed(3),
    )
    x = torch.randn(2, 2, 3)  # two sequences of two positions
    ci = model.causal_importances(model.prepare(x))
    for b in range(2):
        h = net[1](net[0](x[b]))
        z = _plain_transformer(model.global_ci_fn, [x[b], h])
        torch.testing.assert_close(ci.lower["0"][b], z[:, :2].clamp(0, 1))
        torch.testing.assert_close(ci.lower["2"][b], z[:, 2:].clamp(0, 1))
    # bidirectional, as the reference: the last position's input changes the first one's CI
    x2 = x.clone()
    x2[:, 1] += 1.0
    before = model.global_ci_fn({"0": x, "2": net[1](net[0](x))})
    after = model.global_ci_fn({"0": x2, "2": net[1](net[0](x2))})
    assert not torch.allclose(before["0"][:, 0], after["0"][:, 0])


def test_an_embedding_feeds_its_inner_activations_and_trains_v_through_the_ci():
    net = torch.nn.Sequential(torch.nn.Embedding(5, 3), torch.nn.Linear(3, 2))
    patterns = _config(
        module_info=[{"module_pattern": "0", "C": 2}, {"module_pattern": "1", "C": 3}]
    )
    model = ComponentModel(net, patterns.module_info, "global_shared_mlp", [], "hard")
    tokens = torch.tensor([[0, 4, 2]])
    ci = model.causal_importances(model.prepare(tokens))
    (layer,) = model.global_ci_fn.mlp.layers
    inner = model.components_of("0").V.T[tokens]  # h = V[:, token], (1, 3, C=2)
    z = torch.cat([inner, net[0](tokens)], -1) @ layer.weight.T + layer.bias
    torch.testing.assert_close(ci.lower["0"], z[..., :2].clamp(0, 1))
    torch.testing.assert_close(ci.lower["1"], z[..., 2:].clamp(0, 1))
    (ci.upper["0"].sum() + ci.upper["1"].sum()).backward()
    assert model.components_of("0").V.grad.abs().sum() > 0


@pytest.mark.parametrize("fn_type", ["global_shared_mlp", "global_shared_transformer"])
def test_skipping_inert_items_keeps_every_loss_and_gradient(fn_type):
    """The step's inert-item fast path (one all-zero item stands for all) stays exact: a global
    function sees an item's inputs only, and all-zero items get one and the same CI."""
    torch.manual_seed(0)
    target = ResidualMLP(n_features=6, d_embed=8, d_mlp=3, n_layers=2)
    shape = (12, 6) if fn_type == "global_shared_mlp" else (12, 3, 6)  # sequences: 3 positions
    x = torch.randn(*shape)
    x[[1, 4, 5, 9]] = 0.0
    extra = (
        {"ci_fn_hidden_dims": [5]}
        if fn_type == "global_shared_mlp"
        else {"ci_transformer": {**TRANSFORMER, "d_model": 8}}
    )
    config = _config(
        module_info=[{"module_pattern": "layers.*.mlp_*", "C": 4}],
        ci_fn_type=fn_type,
        autocast_bf16=False,
        loss_metric_configs=[
            {"classname": "CIMaskedReconLayerwiseLoss", "coeff": 1.0},
            {"classname": "ImportanceMinimalityLoss", "coeff": 0.01, "pnorm": 1.0},
        ],
        **extra,
    )
    model = ComponentModel(
        target,
        config.module_info,
        fn_type,
        config.ci_fn_hidden_dims,
        ci_transformer=config.ci_transformer,
    )
    acts = model.prepare(x)
    full = LossContext(model, acts, model.causal_importances(acts), config, 0.3, None)
    skipping = step_context(model, x, config, 0.3, None)
    assert skipping.acts.clean.x.shape[0] == 9  # 8 active items and one inert one
    params = model.component_parameters() + model.ci_parameters()
    totals, grads = [], []
    for ctx in (full, skipping):
        total, _ = compute_losses(ctx)
        totals.append(total)
        grads.append(torch.autograd.grad(total, params))
    torch.testing.assert_close(totals[1], totals[0], atol=1e-7, rtol=1e-5)
    for a, b in zip(grads[1], grads[0], strict=True):
        torch.testing.assert_close(a, b, atol=1e-7, rtol=1e-5)


# ----------------------------------------------------------------------------- config


@pytest.mark.parametrize(
    ("fields", "message"),
    [
        ({"ci_fn_type": "global_shared_transformer"}, "ci_transformer: ci_fn_type 'global_shared_"),
        (
            {"ci_fn_type": "vector_mlp", "ci_transformer": TRANSFORMER},
            "ci_transformer is only used by ci_fn_type 'global_shared_transformer', not 'vector",
        ),
        (
            {
                "ci_fn_type": "global_shared_transformer",
                "ci_transformer": TRANSFORMER,
                "ci_fn_hidden_dims": [16],
            },
            r"ci_fn_hidden_dims \[16\] is not used by .* ci_transformer.mlp_hidden_dims",
        ),
        ({"ci_fn_type": "global_shared_mlp"}, "ci_fn_hidden_dims: ci_fn_type 'global_shared_mlp'"),
        (
            {"ci_fn_type": "global_shared_mlp", "ci_fn_hidden_dims": [8], "compile_ci_fn": True},
            "compile_ci_fn needs ci_fn_type 'mlp'",
        ),
        (
            {
                "ci_fn_type": "global_shared_transformer",
                "ci_transformer": {**TRANSFORMER, "n_heads": 4},
            },
            "d_model 4 must split into n_heads 4 heads of even width",
        ),
        (
            {
                "ci_fn_type": "global_shared_transformer",
                "ci_transformer": {**TRANSFORMER, "d_model": 6, "n_heads": 4},
            },
            "d_model 6 must split into n_heads 4",
        ),
        (
            {
                "ci_fn_type": "global_shared_transformer",
                "ci_transformer": {**TRANSFORMER, "n_layers": 2},
            },
            "ci_transformer.n_layers: unknown field",
        ),
        ({"ci_fn_type": "global_mlp"}, "ci_fn_type: Input should be"),
    ],
)
def test_bad_global_ci_configs_name_the_field(fields, message):
    with pytest.raises(ConfigError, match=message):
        _config(**fields)


def test_global_configs_reload_from_their_own_dump():
    for fields in (
        {"ci_fn_type": "global_shared_mlp", "ci_fn_hidden_dims": []},
        {
            "ci_fn_type": "global_shared_transformer",
            "ci_transformer": {**TRANSFORMER, "mlp_hidden_dims": None},
        },
    ):
        config = _config(**fields)
        assert config_from_dict(config.model_dump(mode="json")) == config


def test_transformer_on_feature_vectors_is_refused_before_the_target_is_trained(tmp_path):
    config = resolve_config("tms-5-2").model_dump(mode="json")
    config.update(ci_fn_type="global_shared_transformer", ci_transformer=TRANSFORMER)
    del config["ci_fn_hidden_dims"]
    with pytest.raises(ConfigError, match=r"attends over sequence positions.*'tms-5-2'"):
        toy_task(config_from_dict(config), torch.device("cpu"), tmp_path / "cache")
    assert not (tmp_path / "cache").exists()
    fn = GlobalSharedTransformer(
        {"a": 3},
        {"a": 2},
        _config(ci_fn_type="global_shared_transformer", ci_transformer=TRANSFORMER).ci_transformer,
    )
    with pytest.raises(ValueError, match=r"'a' has input shape \(5, 3\) .*'global_shared_mlp'"):
        fn({"a": torch.zeros(5, 3)})


def test_fsdp_refuses_a_global_ci_fn_before_any_work(tmp_path):
    config = _config(ci_fn_type="global_shared_mlp", ci_fn_hidden_dims=[4])
    task = _sequence_task()
    message = r"--strategy fsdp .* 'global_shared_mlp' is one network .* use --strategy ddp"
    with pytest.raises(ConfigError, match=message):
        run_job(config, task, tmp_path / "x.zarr", JobOptions(workers=2, strategy="fsdp"))
    assert not (tmp_path / "x.zarr").exists()
    plan = WorkerPlan(config, None, "fsdp", 0, 1, torch.device("cpu"), checkpoint_every=5)
    built = []
    with pytest.raises(ConfigError, match=message):
        run_worker(plan, task, on_log=built.append)
    assert built == []


# ----------------------------------------------------------------------------- end to end


@pytest.fixture(scope="module")
def tms_global(tmp_path_factory):
    """tms-5-2 with a global_shared_mlp, decomposed into a store."""
    fields = resolve_config("tms-5-2").model_dump(mode="json")
    fields.update(
        ci_fn_type="global_shared_mlp",
        ci_fn_hidden_dims=[16],
        steps=60,
        batch_size=256,
        train_log_freq=20,
        eval_freq=60,
        grad_clip_norm_ci_fns=1.0,
    )
    config = config_from_dict(fields)
    cache = tmp_path_factory.mktemp("cache")
    task = toy_task(config, torch.device("cpu"), cache)
    out = tmp_path_factory.mktemp("runs") / "tms-global.zarr"
    events = []
    result = decompose(config, task, out=out, progress=events.append)
    return config, task, result, out, events


def test_a_global_mlp_decomposition_trains_and_reloads_to_the_same_cis(tms_global, capsys):
    config, task, result, out, _ = tms_global
    one_step = decompose(config.model_copy(update={"steps": 1}), task).metrics
    for term in ("loss/StochasticReconLoss", "loss/StochasticReconLayerwiseLoss"):  # 10 batches
        assert result.metrics[term] < 0.9 * one_step[term], term
    initial = ComponentModel(  # same seed: what the global function was before training
        task.target, config.module_info, "global_shared_mlp", [16]
    )
    assert not torch.equal(
        initial.global_ci_fn.mlp.layers[0].weight, result.model.global_ci_fn.mlp.layers[0].weight
    )
    store = FactorStore.open(out)
    attrs, params = store.global_ci_fn()
    assert attrs["type"] == "global_shared_mlp" and attrs["modules"] == ["linear1", "linear2"]
    assert attrs["d_in"] == [5, 2] and attrs["C"] == [20, 20] and attrs["hidden_dims"] == [16]
    assert set(params) == {
        "mlp.layers.0.weight",
        "mlp.layers.0.bias",
        "mlp.layers.1.weight",
        "mlp.layers.1.bias",
    }
    loaded = load_decomposition(out).model
    x = task.batch_fn(64, torch.Generator().manual_seed(5))
    for model in (loaded, result.model):
        model.eval()
    ci_loaded = loaded.causal_importances(loaded.prepare(x))
    ci_trained = result.model.causal_importances(result.model.prepare(x))
    for name in ("linear1", "linear2"):
        torch.testing.assert_close(ci_loaded.lower[name], ci_trained.lower[name], atol=0, rtol=0)
    assert main(["inspect", str(out), "--plot", str(out.parent / "figs")]) == 0
    printed = capsys.readouterr().out
    assert "linear1" in printed and "ci_linear1.png" in printed


class TinySeq(torch.nn.Module):
    """tokens (B, T) → embedding → ReLU MLP → logits: a sequence target with an embedding."""

    def __init__(self):
        super().__init__()
        torch.manual_seed(0)
        self.emb = torch.nn.Embedding(8, 6)
        self.fc1 = torch.nn.Linear(6, 6)
        self.fc2 = torch.nn.Linear(6, 8)

    def forward(self, tokens: torch.Tensor) -> torch.Tensor:
        return self.fc2(torch.relu(self.fc1(self.emb(tokens))))


def _sequence_task() -> DecompositionTask:
    def batch_fn(batch_size: int, generator: torch.Generator | None) -> torch.Tensor:
        return torch.randint(0, 8, (batch_size, 5), generator=generator)

    return DecompositionTask(TinySeq(), batch_fn, target_spec={"kind": "test-sequence"})


def _transformer_config(**fields):
    return _config(
        module_info=[{"module_pattern": p, "C": 4} for p in ("emb", "fc1", "fc2")],
        ci_fn_type="global_shared_transformer",
        ci_transformer={"d_model": 8, "n_blocks": 1, "n_heads": 2},
        loss_metric_configs=[
            {"classname": "ImportanceMinimalityLoss", "coeff": 1e-3, "pnorm": 1.0},
            {"classname": "StochasticReconLoss", "coeff": 1.0},
            {"classname": "StochasticReconLayerwiseLoss", "coeff": 1.0},
        ],
        batch_size=8,
        steps=40,
        lr_schedule={"start_val": 1e-2},
        train_log_freq=5,
        eval_freq=20,
        autocast_bf16=False,
        **fields,
    )


def _store_params(path: Path) -> dict[str, np.ndarray]:
    store = FactorStore.open(path)
    out = {f"{m}/{f}": getattr(store, f)(m) for m in store.modules for f in ("U", "V")}
    out.update({f"ci/{k}": v for k, v in store.global_ci_fn()[1].items()})
    return out


@pytest.fixture(scope="module")
def transformer_run(tmp_path_factory):
    """The tiny sequence target decomposed with a global_shared_transformer into a store."""
    config, task = _transformer_config(), _sequence_task()
    out = tmp_path_factory.mktemp("runs") / "whole.zarr"
    events = []
    result = decompose(config, task, out=out, progress=events.append)
    return config, task, result, out, events


def test_a_global_transformer_trains_and_reloads_to_the_same_cis(transformer_run):
    _, task, result, out, events = transformer_run
    assert events[-1].terms["StochasticReconLoss"] < 0.5 * events[0].terms["StochasticReconLoss"]
    loaded, _ = load_component_model(out, target=TinySeq())
    x = task.batch_fn(4, torch.Generator().manual_seed(1))
    ci_loaded = loaded.causal_importances(loaded.prepare(x))
    ci_trained = result.model.causal_importances(result.model.prepare(x))
    for name in ("emb", "fc1", "fc2"):
        torch.testing.assert_close(ci_loaded.lower[name], ci_trained.lower[name], atol=0, rtol=0)
    attrs, _ = FactorStore.open(out).global_ci_fn()
    assert attrs["transformer"] == {
        "d_model": 8,
        "n_blocks": 1,
        "n_heads": 2,
        "mlp_hidden_dims": None,
        "rope_base": 10000.0,
    }


def test_a_global_transformer_run_resumes_bit_for_bit(transformer_run, tmp_path):
    config, task, _, whole, _ = transformer_run

    def stop_at_25(event):
        if event.step == 25:
            raise KeyboardInterrupt

    cut = tmp_path / "cut.zarr"
    with pytest.raises(KeyboardInterrupt):
        decompose(config, task, out=cut, checkpoint_every=10, progress=stop_at_25)
    resumed_run = decompose(config, task, out=cut, checkpoint_every=10, resume=True)
    assert resumed_run.metrics["restarts"] == 1
    expected, resumed = _store_params(whole), _store_params(cut)
    assert expected.keys() == resumed.keys()
    assert any(k.startswith("ci/blocks.0.attn") for k in expected)
    for key in expected:  # same RNG draws, Adam moments and steps: equal bit for bit
        np.testing.assert_array_equal(resumed[key], expected[key], err_msg=key)


def test_a_stored_global_fn_built_for_other_modules_is_refused(transformer_run, tmp_path):
    out = tmp_path / "copy.zarr"
    shutil.copytree(transformer_run[3], out)
    attrs, params = FactorStore.open(out).global_ci_fn()
    architecture = {k: v for k, v in attrs.items() if k != "param_names"}
    architecture["modules"] = ["fc2", "fc1", "emb"]
    writer = StoreWriter.open_existing(out, allow_complete=True)
    writer.write_global_ci_fn(params, architecture)
    writer.mark_complete()
    with pytest.raises(StoreError, match=r"global_ci_fn/ was written for .*'fc2', 'fc1', 'emb'"):
        load_component_model(out, target=TinySeq())
