"""Persistent PGD: sources kept across steps, pinned on hand-computed updates, scopes, and an
exact resume."""

from __future__ import annotations

import math

import numpy as np
import pytest
import torch
from torch import nn

from spd_core.config import ConfigError, ModulePattern, config_from_dict
from spd_core.losses import compute_losses, step_context
from spd_core.losses.context import LossContext
from spd_core.losses.persistent_pgd import (
    PersistentPGDRun,
    PersistentSources,
    ascend_after_backward,
)
from spd_core.model.component_model import CausalImportances, ComponentModel
from spd_core.presets import resolve_config
from spd_core.store import FactorStore
from spd_core.task.toy import toy_task
from spd_core.train import training_state
from spd_core.train.loop import TrainingState, local_batch_size, new_generators, run_steps
from spd_core.train.setup import build_component_model
from spd_core.train.single_process import decompose
from spd_core.train.step import make_optimizer
from tests.stored_params import stored_params
from tests.test_component_model import TinyLM

SIGN = {"type": "sign", "lr_schedule": {"start_val": 0.1}}
ADAM = {"type": "adam", "lr_schedule": {"start_val": 0.1}, "beta1": 0.9, "beta2": 0.999}
SINGLE = {"type": "single_source"}


class OneLinear(nn.Module):
    """y = x · [1, 2]ᵀ, decomposed exactly by two rank-one components (c: x_c · w_c)."""

    def __init__(self):
        super().__init__()
        self.fc = nn.Linear(2, 1, bias=False)
        with torch.no_grad():
            self.fc.weight.copy_(torch.tensor([[1.0, 2.0]]))

    def forward(self, x):
        return self.fc(x)


def _exact_model() -> ComponentModel:
    model = ComponentModel(OneLinear(), [ModulePattern(module_pattern="fc", C=2)], "mlp", [2])
    comp = model.components_of("fc")
    with torch.no_grad():
        comp.V.copy_(torch.eye(2))
        comp.U.copy_(torch.tensor([[1.0], [2.0]]))
    return model


def _config(loss: dict, batch_size: int = 1, **extra):
    return config_from_dict(
        {
            "module_info": [{"module_pattern": "fc", "C": 2}],
            "loss_metric_configs": [loss],
            "batch_size": batch_size,
            "steps": 10,
            "use_delta_component": False,
            "autocast_bf16": False,
            **extra,
        }
    )


def _persistent(optimizer=SIGN, scope=SINGLE, classname="PersistentPGDReconLoss", **extra):
    return {"classname": classname, "coeff": 2.0, "optimizer": optimizer, "scope": scope, **extra}


def _ctx(model, config, x, g, run) -> LossContext:
    acts = model.prepare(x)
    ci = CausalImportances({"fc": g}, {"fc": g})
    return LossContext(model, acts, ci, config, 0.0, torch.Generator(), persistent=run)


def _step(model, config, x, g, run) -> float:
    """One training step of the sources: the weighted total's backward, then their ascent."""
    total, terms = compute_losses(_ctx(model, config, x, g, run))
    total.backward()
    ascend_after_backward(run, config)
    return terms[config.loss_metric_configs[0].classname].item()


def _run_with(values: list[float]) -> PersistentPGDRun:
    src = torch.tensor([values]).requires_grad_(True)
    return PersistentPGDRun({"PersistentPGDReconLoss": PersistentSources({"fc": src})}, step=0)


X, G = torch.tensor([[1.0, 1.0]]), torch.tensor([[0.5, 0.0]])


def test_sign_step_moves_each_source_by_lr_up_its_own_gradient():
    """m = g + (1 − g) s; loss = r² with r = Σ_c (1 − g_c)(s_c − 1) x_c w_c. At s = (.5, .25):
    r = .5·(−.5)·1 + 1·(−.75)·2 = −1.75, loss 3.0625; ∂/∂s_c = 2r(1 − g_c)x_c w_c = (−1.75, −7):
    ascent lowers both sources by lr = 0.1."""
    model, config = _exact_model(), _config(_persistent())
    run = _run_with([0.5, 0.25])
    assert _step(model, config, X, G, run) == pytest.approx(3.0625)
    src = run.adversaries["PersistentPGDReconLoss"].values["fc"]
    torch.testing.assert_close(src.detach(), torch.tensor([[0.4, 0.15]]))
    assert src.grad is None  # cleared for the next step
    assert model.components_of("fc").U.grad is not None  # the same backward trained U


def test_adam_two_steps_by_hand_with_the_coeff_divided_out():
    model, config = _exact_model(), _config(_persistent(optimizer=ADAM))
    run = _run_with([0.5, 0.25])
    adv = run.adversaries["PersistentPGDReconLoss"]
    adv.exp_avg = {"fc": torch.zeros(1, 2)}
    adv.exp_avg_sq = {"fc": torch.zeros(1, 2)}
    _step(model, config, X, G, run)
    g1 = [-1.75, -7.0]  # the term's gradient (coeff 2 divided out)
    torch.testing.assert_close(adv.exp_avg["fc"], torch.tensor([[0.1 * g1[0], 0.1 * g1[1]]]))
    # first step: m̂ = g, v̂ = g² → every source moves by lr · sign(g)
    torch.testing.assert_close(adv.values["fc"].detach(), torch.tensor([[0.4, 0.15]]))
    # at s = (.4, .15): r = .5·(−.6) + 1·(−.85)·2 = −2, gradient (2r·.5, 2r·2) = (−2, −8)
    assert _step(model, config, X, G, run) == pytest.approx(4.0)
    g2 = [-2.0, -8.0]
    expected = []
    for s1, a, b in zip([0.4, 0.15], g1, g2, strict=True):
        m = 0.9 * 0.1 * a + 0.1 * b
        v = 0.999 * 0.001 * a * a + 0.001 * b * b
        m_hat, v_hat = m / (1 - 0.9**2), v / (1 - 0.999**2)
        expected.append(s1 + 0.1 * m_hat / (math.sqrt(v_hat) + 1e-8))
    torch.testing.assert_close(adv.values["fc"].detach(), torch.tensor([expected]))
    assert adv.n_updates == 2


def test_sigmoid_parameterisation_masks_with_sigmoid_of_the_raw_source_and_never_clamps():
    model = _exact_model()
    config = _config(
        _persistent(
            use_sigmoid_parameterization=True, optimizer={**SIGN, "lr_schedule": {"start_val": 3.0}}
        )
    )
    run = _run_with([0.0, 0.0])  # sigmoid 0.5: r = .5·(−.5) + 1·(−.5)·2 = −1.25
    assert _step(model, config, X, G, run) == pytest.approx(1.5625)
    torch.testing.assert_close(
        run.adversaries["PersistentPGDReconLoss"].values["fc"].detach(),
        torch.tensor([[-3.0, -3.0]]),  # raw sources leave [0, 1]
    )


def test_warmup_steps_ascend_on_the_batch_before_the_loss():
    """One warm-up ascent from (.5, .25) gives (.4, .15) before the loss: r = −2, loss 4."""
    model, config = _exact_model(), _config(_persistent(n_warmup_steps=1))
    run = _run_with([0.5, 0.25])
    _, terms = compute_losses(_ctx(model, config, X, G, run))
    assert terms["PersistentPGDReconLoss"].item() == pytest.approx(4.0)


@pytest.mark.parametrize(
    ("scope", "expected"),
    [
        # rows 0, 2 use source 0 (s = 0: m = g = 0, error 3² = 9), rows 1, 3 source 1 (m = 1)
        ({"type": "repeat_across_batch", "n_sources": 2}, 18 / 4),
        ({"type": "per_batch_per_position"}, 9 / 4),  # only row 0 has s = 0
        ({"type": "single_source"}, 9.0),
        ({"type": "broadcast_across_batch"}, 9.0),
    ],
)
def test_which_source_each_batch_item_uses(scope, expected):
    model = _exact_model()
    config = _config(_persistent(scope=scope), batch_size=4)
    source = {
        "repeat_across_batch": [[0.0, 0.0], [1.0, 1.0]],
        "per_batch_per_position": [[0.0, 0.0], [1.0, 1.0], [1.0, 1.0], [1.0, 1.0]],
    }.get(scope["type"], [[0.0, 0.0]])
    src = torch.tensor(source).requires_grad_(True)
    run = PersistentPGDRun({"PersistentPGDReconLoss": PersistentSources({"fc": src})}, step=0)
    x, g = torch.ones(4, 2), torch.zeros(4, 2)
    _, terms = compute_losses(_ctx(model, config, x, g, run))
    assert terms["PersistentPGDReconLoss"].item() == pytest.approx(expected)


@pytest.mark.parametrize(
    ("scope", "shape"),
    [
        (SINGLE, (1, 1, 5)),
        ({"type": "broadcast_across_batch"}, (1, 6, 5)),
        ({"type": "repeat_across_batch", "n_sources": 2}, (2, 6, 5)),
        ({"type": "per_batch_per_position"}, (4, 6, 5)),
    ],
)
def test_sources_are_created_at_the_first_step_with_the_scope_shape(scope, shape):
    """Token batch (4, 6), C = 4, delta on: width 5. Values start in [0, 1), Adam moments at 0."""
    model = ComponentModel(TinyLM(), [ModulePattern(module_pattern="head", C=4)], "mlp", [3])
    config = config_from_dict(
        {
            "module_info": [{"module_pattern": "head", "C": 4}],
            "loss_metric_configs": [_persistent(optimizer=ADAM, scope=scope)],
            "batch_size": 4,
            "steps": 10,
            "output_loss_type": "kl",
            "autocast_bf16": False,
        }
    )
    run = PersistentPGDRun({}, step=0)
    ids = torch.randint(0, 11, (4, 6))
    compute_losses(step_context(model, ids, config, 0.0, None, persistent=run))
    adv = run.adversaries["PersistentPGDReconLoss"]
    src = adv.values["head"]
    assert src.shape == shape and src.requires_grad
    assert float(src.detach().min()) >= 0 and float(src.detach().max()) < 1
    assert adv.exp_avg["head"].shape == shape and not adv.exp_avg["head"].any()
    again = PersistentPGDRun({}, step=0)
    compute_losses(step_context(model, ids, config, 0.0, None, persistent=again))
    assert torch.equal(again.adversaries["PersistentPGDReconLoss"].values["head"], src)


def test_a_batch_the_per_position_sources_do_not_fit_is_refused_with_the_shapes():
    model = ComponentModel(TinyLM(), [ModulePattern(module_pattern="head", C=4)], "mlp", [3])
    config = config_from_dict(
        {
            "module_info": [{"module_pattern": "head", "C": 4}],
            "loss_metric_configs": [_persistent(scope={"type": "per_batch_per_position"})],
            "batch_size": 4,
            "steps": 10,
            "output_loss_type": "kl",
        }
    )
    run = PersistentPGDRun({}, step=0)
    compute_losses(
        step_context(model, torch.zeros(4, 6, dtype=torch.long), config, 0.0, None, persistent=run)
    )
    with pytest.raises(
        ConfigError,
        match=r"per_batch_per_position holds sources for positions \(4, 6\) but this batch has positions \(4, 5\)",
    ):
        compute_losses(
            step_context(
                model, torch.zeros(4, 5, dtype=torch.long), config, 0.0, None, persistent=run
            )
        )


def test_sparse_batches_give_per_position_sources_the_whole_batch_gradient():
    """A toy step keeps only the items a mask can change (plus one for the inert rest); the
    per-position sources still get each item's gradient, and zero for the inert items."""
    model = _exact_model()
    scope = {"type": "per_batch_per_position"}
    config = _config(_persistent(optimizer=ADAM, scope=scope), batch_size=5)
    x = torch.tensor([[1.0, 1.0], [0.0, 0.0], [0.0, 2.0], [0.0, 0.0], [0.0, 0.0]])
    grads = []
    for restrict in (True, False):
        src = torch.full((5, 2), 0.5).requires_grad_(True)
        run = PersistentPGDRun({"PersistentPGDReconLoss": PersistentSources({"fc": src})}, step=0)
        if restrict:
            ctx = step_context(model, x, config, 0.0, None, persistent=run)
            assert ctx.rows is not None and ctx.rows.numel() == 3
        else:
            acts = model.prepare(x)
            ctx = LossContext(
                model, acts, model.causal_importances(acts), config, 0.0, None, persistent=run
            )
        total, _ = compute_losses(ctx)
        total.backward()
        grads.append(src.grad.clone())
    torch.testing.assert_close(grads[0], grads[1])
    assert not grads[0][[1, 3, 4]].any() and grads[0][0].all() and grads[0][2, 1] != 0


def test_config_refuses_scopes_and_terms_that_cannot_work():
    with pytest.raises(ConfigError, match=r"n_sources 3 does not divide batch_size 4"):
        _config(_persistent(scope={"type": "repeat_across_batch", "n_sources": 3}), batch_size=4)
    two = _config(_persistent(scope={"type": "repeat_across_batch", "n_sources": 2}), batch_size=2)
    with pytest.raises(ConfigError, match=r"n_sources 2 does not divide each worker's batch of 1"):
        local_batch_size(two, world_size=2)
    with pytest.raises(ConfigError, match=r"coeff: Input should be greater than 0"):
        _config({**_persistent(), "coeff": 0.0})
    with pytest.raises(ConfigError, match=r"lists PersistentPGDReconLoss twice"):
        config_from_dict(
            {
                "module_info": [{"module_pattern": "fc", "C": 2}],
                "loss_metric_configs": [_persistent(), _persistent()],
                "batch_size": 2,
                "steps": 1,
            }
        )
    with pytest.raises(ConfigError, match=r"scope"):
        _config(_persistent(scope={"type": "per_token"}))


def _tms_with_persistent_pgd(cache_dir, steps: int = 40):
    config = resolve_config("tms-5-2")
    losses = [c.model_dump(mode="json") for c in config.loss_metric_configs] + [
        _persistent(optimizer=ADAM, scope={"type": "per_batch_per_position"}, coeff=0.5),
        _persistent(
            classname="PersistentPGDReconSubsetLoss",
            scope=SINGLE,
            routing={"type": "static_probability", "p": 0.5},
            coeff=0.5,
        ),
    ]
    data = config.model_dump(mode="json") | {
        "steps": steps,
        "batch_size": 64,
        "train_log_freq": 5,
        "eval_freq": 20,
        "loss_metric_configs": losses,
    }
    config = config_from_dict(data)
    return config, toy_task(config, torch.device("cpu"), cache_dir)


@pytest.fixture(scope="module")
def tms(tmp_path_factory):
    return _tms_with_persistent_pgd(tmp_path_factory.mktemp("cache"))


def test_checkpoints_hold_the_sources_and_adams_moments_exactly(tms, tmp_path):
    config, task = tms
    model = build_component_model(config, task)
    data, masks = new_generators(config, torch.device("cpu"))
    state = TrainingState(model, make_optimizer(model, 1e-3), data, masks)
    short = config.model_copy(update={"steps": 3})
    run_steps(state, short, task)
    training_state.save(state, tmp_path, rank=0, world_size=1)
    fresh_model = build_component_model(config, task)
    data2, masks2 = new_generators(config, torch.device("cpu"))
    restored = TrainingState(fresh_model, make_optimizer(fresh_model, 1e-3), data2, masks2)
    training_state.load(restored, tmp_path, rank=0, world_size=1)
    assert set(restored.adversaries) == {"PersistentPGDReconLoss", "PersistentPGDReconSubsetLoss"}
    for name, adv in state.adversaries.items():
        back = restored.adversaries[name]
        assert back.n_updates == adv.n_updates == 3
        for part in ("values", "exp_avg", "exp_avg_sq"):
            for module, value in getattr(adv, part).items():
                assert torch.equal(getattr(back, part)[module], value), (name, part, module)
        assert all(v.requires_grad for v in back.values.values())


def test_a_stopped_run_with_persistent_pgd_resumes_bit_for_bit(tms, tmp_path):
    config, task = tms
    decompose(config, task, out=tmp_path / "whole.zarr")

    def stop_at_25(event) -> None:
        if event.step == 25:
            raise KeyboardInterrupt

    out = tmp_path / "cut.zarr"
    with pytest.raises(KeyboardInterrupt):
        decompose(config, task, out=out, checkpoint_every=10, progress=stop_at_25)
    metrics = decompose(config, task, out=out, checkpoint_every=10, resume=True).metrics
    assert metrics["restarts"] == 1
    whole, resumed = stored_params(tmp_path / "whole.zarr"), stored_params(out)
    for key in whole:  # sources (and Adam's moments) restored exactly: the same run to the bit
        np.testing.assert_array_equal(resumed[key], whole[key], err_msg=key)
    curves = FactorStore.open(out).curves()
    assert np.isfinite(curves["loss/PersistentPGDReconLoss"]).all()
