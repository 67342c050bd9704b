"""Toy targets: data generator, models, deterministic training, cache and validation."""

import math

import pytest
import torch
from torch import nn

from spd_core.targets import registry
from spd_core.targets.registry import (
    TOY_TARGETS,
    cache_path,
    load_toy_target,
    toy_target_from_state,
    toy_target_spec,
)
from spd_core.targets.resid_mlp import ResidualMLP
from spd_core.targets.sparse_features import SparseFeatures
from spd_core.targets.spec import ToyTargetSpec
from spd_core.targets.tms import TMSModel
from spd_core.targets.training import init_linear_, lr_at, train_toy_target
from spd_core.targets.validation import TargetTrainingError, validate_target

SMALL_RESID = {"n_features": 12, "d_embed": 32, "d_mlp": 6, "train_steps": 30, "batch_size": 256}


@pytest.fixture(autouse=True, scope="module")
def _one_thread():
    """Training here runs on one thread (shared CPUs, and bit-identical results need a fixed count)."""
    before = torch.get_num_threads()
    torch.set_num_threads(1)
    yield
    torch.set_num_threads(before)


def _gen(seed: int) -> torch.Generator:
    return torch.Generator().manual_seed(seed)


def _states_equal(a: nn.Module, b: nn.Module) -> bool:
    sa, sb = a.state_dict(), b.state_dict()
    return sa.keys() == sb.keys() and all(torch.equal(sa[k], sb[k]) for k in sa)


# --- data -----------------------------------------------------------------------------------------


def test_sparse_features_density_and_range() -> None:
    data = SparseFeatures(50, 0.1, (-1.0, 2.0))
    x = data.generate(20_000, _gen(0))
    assert x.shape == (20_000, 50)
    active = x != 0
    assert abs(active.float().mean().item() - 0.1) < 0.005, "fraction of active features != p"
    vals = x[active]
    assert vals.min() >= -1.0 and vals.max() <= 2.0
    assert abs(vals.mean().item() - 0.5) < 0.02, "active values not uniform in the range"
    assert (~active).all(dim=1).any(), "at_least_zero_active must allow all-zero rows"


def test_sparse_features_exactly_one_active() -> None:
    x = SparseFeatures(7, 0.01, (0.0, 1.0), mode="exactly_one_active").generate(4000, _gen(0))
    assert ((x != 0).sum(dim=1) == 1).all()
    assert x.min() >= 0 and x.max() <= 1
    counts = (x != 0).sum(dim=0).float()
    assert counts.min() > 0.8 * 4000 / 7, "active feature not drawn uniformly"


def test_sparse_features_follow_the_generator() -> None:
    data = SparseFeatures(20, 0.3, (0.0, 1.0))
    assert torch.equal(data.generate(64, _gen(3)), data.generate(64, _gen(3)))
    assert not torch.equal(data.generate(64, _gen(3)), data.generate(64, _gen(4)))


# --- specs and registry ---------------------------------------------------------------------------


_EXPECTED_VARIANTS = {
    # name: (n_features, n_hidden, n_hidden_layers, identity_hidden, batch_size, bias_init_zero)
    "tms-5-2": (5, 2, 0, False, 1024, False),
    "tms-40-10": (40, 10, 0, False, 8192, True),
    "tms-5-2-id": (5, 2, 1, True, 1024, False),
    "tms-40-10-id": (40, 10, 1, True, 8192, True),
    # name: (n_features, d_embed, d_mlp, n_layers, batch_size, train_steps)
    "resid-mlp-1": (100, 1000, 50, 1, 2048, 1_000),
    "resid-mlp-2": (100, 1000, 25, 2, 2048, 1_000),
    "resid-mlp-3": (102, 1000, 17, 3, 2048, 10_000),
}
_TMS_FIELDS = ("n_features", "n_hidden", "n_hidden_layers", "identity_hidden", "batch_size")
_RESID_FIELDS = ("n_features", "d_embed", "d_mlp", "n_layers", "batch_size", "train_steps")


@pytest.mark.parametrize("name", list(_EXPECTED_VARIANTS))
def test_named_variants_have_the_paper_recipe(name: str) -> None:
    s = toy_target_spec(name)
    if s.kind == "tms":
        got = (*(getattr(s, f) for f in _TMS_FIELDS), s.bias_init_zero)
        recipe = (s.lr, s.lr_schedule, s.train_steps, s.feature_probability, s.value_range)
        assert recipe == (5e-3, "constant", 10_000, 0.05, (0.0, 1.0))
    else:
        got = tuple(getattr(s, f) for f in _RESID_FIELDS)
        recipe = (s.lr, s.lr_schedule, s.feature_probability, s.value_range)
        assert recipe == (3e-3, "cosine", 0.01, (-1.0, 1.0))
    assert got == _EXPECTED_VARIANTS[name]
    assert s.weight_decay == 0.01


def test_registry_has_exactly_the_named_variants() -> None:
    # the paper's toy models, and the induction transformer (tests/test_induction_target.py)
    assert set(TOY_TARGETS) == {*_EXPECTED_VARIANTS, "induction-2l"}


def test_unknown_variant_lists_known_names() -> None:
    with pytest.raises(ValueError, match=r"tms-9-9.*known: .*tms-5-2.*resid-mlp-3"):
        toy_target_spec("tms-9-9")


def test_spec_rejects_bad_fields() -> None:
    with pytest.raises(ValueError, match="extra"):
        ToyTargetSpec(kind="tms", n_features=5, n_hidden=2, dropout=0.1)  # type: ignore[call-arg]
    with pytest.raises(ValueError, match="d_mlp only apply to kind='resid_mlp'"):
        ToyTargetSpec(kind="tms", n_features=5, n_hidden=2, d_mlp=3)
    with pytest.raises(ValueError, match="requires n_hidden"):
        ToyTargetSpec(kind="tms", n_features=5)
    with pytest.raises(ValueError, match="train_steps"):
        toy_target_spec("tms-5-2", train_steps=0)


def test_cache_key_depends_on_every_field() -> None:
    base = toy_target_spec("tms-5-2")
    assert base.cache_key() == toy_target_spec("tms-5-2").cache_key()
    assert base.cache_key() != toy_target_spec("tms-5-2", seed=1).cache_key()
    assert base.cache_key() != toy_target_spec("tms-5-2", lr=1e-3).cache_key()


def test_cosine_lr_goes_to_zero() -> None:
    assert lr_at(0, 100, 3e-3, "cosine") == 3e-3
    assert lr_at(99, 100, 3e-3, "cosine") == pytest.approx(0.0, abs=1e-15)
    assert lr_at(50, 101, 3e-3, "cosine") == pytest.approx(1.5e-3)
    assert lr_at(99, 100, 3e-3, "constant") == 3e-3


# --- training -------------------------------------------------------------------------------------


def test_init_draws_from_the_generator_and_can_zero_the_bias() -> None:
    a, b = nn.Linear(10, 4), nn.Linear(10, 4)
    init_linear_(a, _gen(0))
    init_linear_(b, _gen(0), zero_bias=True)
    assert torch.equal(a.weight, b.weight) and a.weight.abs().max() <= 1 / math.sqrt(10)
    assert torch.equal(b.bias, torch.zeros(4)) and a.bias.abs().min() > 0


def test_training_is_deterministic_in_the_seed() -> None:
    tms = toy_target_spec("tms-5-2-id", train_steps=50)
    assert _states_equal(train_toy_target(tms), train_toy_target(tms))
    other_seed = toy_target_spec("tms-5-2-id", train_steps=50, seed=1)
    assert not _states_equal(train_toy_target(tms), train_toy_target(other_seed))
    res = toy_target_spec("resid-mlp-2", **SMALL_RESID)
    a, b = train_toy_target(res), train_toy_target(res)
    assert _states_equal(a, b)
    c = train_toy_target(toy_target_spec("resid-mlp-2", **SMALL_RESID, seed=1))
    assert not torch.equal(a.W_E, c.W_E), "embedding must come from the seed"
    assert not _states_equal(a, c)


def test_tms_training_ties_weights_then_materialises_linear2() -> None:
    model = train_toy_target(toy_target_spec("tms-5-2", train_steps=100))
    assert isinstance(model, TMSModel)
    w1, w2 = model.linear1.weight, model.linear2.weight
    assert torch.equal(w2, w1.T)
    assert isinstance(w2, nn.Parameter) and w2.data_ptr() != w1.data_ptr()
    assert "linear2.weight" in model.state_dict()
    x = SparseFeatures(5, 0.5, (0.0, 1.0)).generate(32, _gen(0))
    tied = torch.relu(x @ w1.T @ w1 + model.linear2.bias)
    torch.testing.assert_close(model(x), tied)
    one_step = train_toy_target(toy_target_spec("tms-5-2", train_steps=1))
    assert not torch.allclose(w1, one_step.linear1.weight), "100 steps must move W1"


def test_tms_identity_hidden_layer_stays_identity() -> None:
    model = train_toy_target(toy_target_spec("tms-5-2-id", train_steps=100))
    assert isinstance(model, TMSModel)
    (hidden,) = model.hidden_layers
    assert torch.equal(hidden.weight, torch.eye(2))
    assert not hidden.weight.requires_grad
    x = torch.rand(8, 5)
    w1 = model.linear1.weight
    torch.testing.assert_close(model(x), torch.relu(x @ w1.T @ w1 + model.linear2.bias))


def test_resid_mlp_training_passes_validation() -> None:
    small = {"n_features": 8, "d_embed": 64, "d_mlp": 8, "feature_probability": 0.1}
    spec = toy_target_spec("resid-mlp-1", **small, train_steps=150, batch_size=256)
    check = validate_target(train_toy_target(spec), spec.value_range)
    assert check.summary["mean_loss_ratio"] < 0.25


# --- model structure ------------------------------------------------------------------------------


@pytest.mark.parametrize(
    "model",
    [TMSModel(5, 2), TMSModel(5, 2, 2), TMSModel(4, 3, 1, True), ResidualMLP(6, 8, 3, 3)],
    ids=["tms", "tms-2-hidden", "tms-id", "resid"],
)
def test_forward_hooks_fire_on_every_linear(model: nn.Module) -> None:
    fired: list[str] = []
    linears = {n: m for n, m in model.named_modules() if isinstance(m, nn.Linear)}
    for name, module in linears.items():
        module.register_forward_hook(lambda *_, name=name: fired.append(name))
    model(torch.rand(3, 6 if isinstance(model, ResidualMLP) else model.n_features))
    assert sorted(fired) == sorted(linears), f"hooks fired on {fired}, Linears: {list(linears)}"


def test_tms_submodule_names() -> None:
    names = {n for n, _ in TMSModel(5, 2, 1, identity_hidden=True).named_modules()}
    assert {"linear1", "hidden_layers.0", "linear2"} <= names


def test_forward_from_layer_equals_forward() -> None:
    torch.manual_seed(0)
    model = ResidualMLP(6, 16, 4, 3)
    x = torch.randn(10, 6)
    resid = x @ model.W_E
    torch.testing.assert_close(model.forward_from_layer(0, resid), model(x), rtol=0, atol=0)
    for layer in range(3):
        torch.testing.assert_close(model.forward_from_layer(layer, resid), model(x))
        resid = resid + model.layers[layer](resid)
    torch.testing.assert_close(model.forward_from_layer(3, resid), model(x))
    fired: list[int] = []
    for i, block in enumerate(model.layers):
        block.mlp_in.register_forward_hook(lambda *_, i=i: fired.append(i))
    model.forward_from_layer(1, x @ model.W_E)
    assert fired == [1, 2], "forward_from_layer must run the layers from `layer` as modules"


def test_layer_shares_on_a_hand_built_two_layer_model() -> None:
    # W_E = W_U = I (2 features, d_embed 2, d_mlp 1). Layer 0 reads and writes e0 only; layer 1
    # reads e0 + e1 and writes (0.5, 1). Feature 0 at scale s: r1 = 2s e0, full output (3s, 2s);
    # skipping layer 0 gives (1.5s, s) (a move of s·√3.25), skipping layer 1 gives (2s, 0)
    # (a move of s·√5). Feature 1 never reaches layer 0's neuron: its shares are (0, 1).
    model = ResidualMLP(2, 2, 1, 2)
    with torch.no_grad():
        model.set_embedding_(torch.eye(2))
        model.layers[0].mlp_in.weight.copy_(torch.tensor([[1.0, 0.0]]))
        model.layers[0].mlp_out.weight.copy_(torch.tensor([[1.0], [0.0]]))
        model.layers[1].mlp_in.weight.copy_(torch.tensor([[1.0, 1.0]]))
        model.layers[1].mlp_out.weight.copy_(torch.tensor([[0.5], [1.0]]))
    a, b = 3.25**0.5, 5**0.5
    expected = torch.tensor([[a / (a + b), 0.0], [b / (a + b), 1.0]])
    torch.testing.assert_close(model.layer_shares(scale=0.75), expected)


def test_resid_mlp_embedding_is_frozen_and_unit_norm() -> None:
    model = train_toy_target(toy_target_spec("resid-mlp-1", **{**SMALL_RESID, "train_steps": 5}))
    assert isinstance(model, ResidualMLP)
    assert not model.W_E.requires_grad and not model.W_U.requires_grad
    torch.testing.assert_close(model.W_E.norm(dim=1), torch.ones(12))
    assert torch.equal(model.W_U, model.W_E.T)


# --- loading and caching --------------------------------------------------------------------------


def test_cache_hit_returns_identical_weights_without_training(tmp_path, monkeypatch) -> None:
    spec = toy_target_spec("tms-5-2-id", train_steps=20)
    calls: list[ToyTargetSpec] = []
    real_train = registry.train_toy_target

    def counting_train(s: ToyTargetSpec) -> nn.Module:
        calls.append(s)
        return real_train(s)

    monkeypatch.setattr(registry, "train_toy_target", counting_train)
    first = load_toy_target(spec, tmp_path, validate=False)
    path = cache_path(spec, tmp_path)
    assert path.parent == tmp_path / "targets" and spec.cache_key() in path.name and path.exists()
    mtime = path.stat().st_mtime_ns
    second = load_toy_target(spec, tmp_path, validate=False)
    assert len(calls) == 1, "second load retrained instead of reading the cache"
    assert path.stat().st_mtime_ns == mtime
    assert _states_equal(first.model, second.model)
    load_toy_target(spec.model_copy(update={"seed": 5}), tmp_path, validate=False)
    assert len(calls) == 2, "a different spec must not hit the cache"


def test_cache_dir_defaults_to_env(tmp_path, monkeypatch) -> None:
    monkeypatch.setenv("SPD_CACHE_DIR", str(tmp_path))
    spec = toy_target_spec("tms-5-2", train_steps=5)
    load_toy_target(spec, validate=False)
    assert cache_path(spec).parent == tmp_path / "targets" and cache_path(spec).exists()


def test_loaded_target_is_frozen_with_training_data(tmp_path) -> None:
    spec = toy_target_spec("resid-mlp-2", **SMALL_RESID)
    target = load_toy_target(spec, tmp_path, validate=False)
    assert not target.model.training
    assert not any(p.requires_grad for p in target.model.parameters())
    assert target.data.feature_probability == 0.01 and target.data.value_range == (-1.0, 1.0)
    assert target.data.n_features == 12 and target.spec == spec
    rebuilt = toy_target_from_state(spec, target.model.state_dict())
    assert _states_equal(rebuilt.model, target.model) and not rebuilt.model.training


def test_failing_fresh_target_raises_and_is_not_cached(tmp_path) -> None:
    spec = toy_target_spec("tms-5-2", train_steps=3)  # far too short to learn every feature
    with pytest.raises(TargetTrainingError, match="dropped feature"):
        load_toy_target(spec, tmp_path)
    assert not cache_path(spec, tmp_path).exists()


# --- validation -----------------------------------------------------------------------------------


def _pentagon_tms() -> TMSModel:
    """The 5-2 solution of the paper: features on a regular pentagon, small negative bias."""
    model = TMSModel(5, 2)
    angles = torch.arange(5) * 2 * math.pi / 5
    with torch.no_grad():
        model.linear1.weight.copy_(torch.stack([angles.cos(), angles.sin()]))
        model.linear2.weight.copy_(model.linear1.weight.T)
        model.linear2.bias.fill_(-0.3)
    return model


def _exact_resid_mlp() -> ResidualMLP:
    """Computes ReLU(x) + x exactly: orthonormal embedding, one neuron per feature."""
    model = ResidualMLP(6, 16, 6, 1)
    w_e = torch.linalg.qr(torch.randn(16, 6, generator=_gen(0)))[0].T
    model.set_embedding_(w_e)
    with torch.no_grad():
        model.layers[0].mlp_in.weight.copy_(w_e)
        model.layers[0].mlp_out.weight.copy_(w_e.T)
    return model


def test_tms_validation_passes_good_and_rejects_dropped_feature() -> None:
    model = _pentagon_tms()
    check = validate_target(model, (0.0, 1.0))
    assert check.summary["min_column_norm"] == pytest.approx(1.0)
    with torch.no_grad():
        model.linear1.weight[:, 3] = 0
        model.linear2.weight[3, :] = 0
    with pytest.raises(TargetTrainingError, match=r"dropped feature\(s\) \[3\]"):
        validate_target(model, (0.0, 1.0))


def test_tms_validation_rejects_feature_with_norm_but_bad_output() -> None:
    model = _pentagon_tms()
    with torch.no_grad():
        model.linear2.bias[1] = -2.0  # feature 1 still has a W1 column but is never output
    with pytest.raises(TargetTrainingError, match=r"\[1\]"):
        validate_target(model, (0.0, 1.0))


def test_resid_mlp_validation_passes_good_and_rejects_unlearnt_feature() -> None:
    model = _exact_resid_mlp()
    check = validate_target(model, (-1.0, 1.0))
    assert check.summary["max_loss_ratio"] < 1e-8
    with torch.no_grad():
        model.layers[0].mlp_in.weight[4] = 0  # the neuron of feature 4
    with pytest.raises(TargetTrainingError, match=r"1 feature\(s\) not learnt.*\(4, 1\.0, 1\.0\)"):
        validate_target(model, (-1.0, 1.0))
