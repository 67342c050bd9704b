"""Adversarial (PGD) reconstruction."""

import pytest
import torch

from spd_core.config import ConfigError, ModulePattern, config_from_dict
from spd_core.losses import LossContext
from spd_core.losses.pgd import _init_sources, pgd_recon
from spd_core.losses.reconstruction import mean_divergence
from spd_core.model.component_model import ComponentModel


def _setup(two_layer, scope="unique_per_datapoint", n_steps=1, step_size=1.0, init="random"):
    model = ComponentModel(two_layer, [ModulePattern(module_pattern="fc*", C=4)], "vector_mlp", [3])
    loss = {
        "classname": "PGDReconLoss",
        "coeff": 1.0,
        "init": init,
        "step_size": step_size,
        "n_steps": n_steps,
        "mask_scope": scope,
    }
    config = config_from_dict(
        {
            "module_info": [{"module_pattern": "fc*", "C": 4}],
            "loss_metric_configs": [loss],
            "batch_size": 8,
            "steps": 1,
        }
    )
    x = torch.randn(8, 3)
    acts = model.prepare(x)
    ci = model.causal_importances(acts)
    ctx = LossContext(model, acts, ci, config, 0.0, torch.Generator().manual_seed(0))
    return model, config.loss_metric_configs[0], ctx


def test_pgd_loss_is_at_least_the_loss_at_its_start(two_layer):
    """One ascent step from the all-ones source (= unmasked + full delta = target) cannot lower
    the loss below zero, and a multi-step ascent from random ends above the random start."""
    _model, cfg, ctx = _setup(two_layer, n_steps=5, step_size=0.2)
    start = _init_sources(ctx, cfg)
    from spd_core.losses.pgd import _masks

    with torch.no_grad():
        start_loss = mean_divergence(ctx, [_masks(ctx, start)])
    ctx.generator.manual_seed(0)
    final = pgd_recon(ctx, cfg, "all")
    assert final.item() >= start_loss.item()


def test_pgd_single_unit_step_gives_binary_sources_and_trains_only_params(two_layer):
    model, cfg, ctx = _setup(two_layer)
    captured = {}
    import spd_core.losses.pgd as pgd

    original = pgd._masks

    def spy(ctx_, sources):
        if not captured:
            captured.update({k: (v, v.detach().clone()) for k, v in sources.items()})
        return original(ctx_, sources)

    pgd._masks = spy
    try:
        loss = pgd_recon(ctx, cfg, "all")
    finally:
        pgd._masks = original
    moved = 0
    for src, start in captured.values():
        changed = src != start  # a zero gradient leaves a coordinate where it started
        assert set(src[changed].unique().tolist()) <= {0.0, 1.0}
        moved += int(changed.sum())
        assert not src.requires_grad
    assert moved > 0
    loss.backward()
    assert model.components_of("fc1").U.grad is not None
    assert model.ci_fn_of("fc1").net.weights[0].grad is not None


def test_shared_scope_has_one_source_per_layer(two_layer):
    _, cfg, ctx = _setup(two_layer, scope="shared_across_batch")
    sources = _init_sources(ctx, cfg)
    assert sources["fc1"].shape == (1, 5)  # C + 1 for the delta


@pytest.mark.parametrize("init", ["ones", "zeroes"])
def test_pgd_fixed_inits(two_layer, init):
    _, cfg, ctx = _setup(two_layer, init=init)
    value = 1.0 if init == "ones" else 0.0
    assert bool((_init_sources(ctx, cfg)["fc2"] == value).all())


def test_pgd_eval_reaches_the_worst_mask_of_the_box_by_hand():
    """y = x · [1, 2]ᵀ split exactly into two components; x = (1, 1), CI g = (0.5, 0). The loss
    (Σ_c (1 − g_c)(s_c − 1) x_c w_c)² is largest at s = 0: (−0.5 − 2)² = 6.25, which one unit
    sign step from any random start reaches."""
    from spd_core.config import PGDEval
    from spd_core.model.component_model import CausalImportances
    from tests.test_persistent_pgd import _config, _exact_model

    model, config = _exact_model(), _config({"classname": "CIMaskedReconLoss", "coeff": 1.0})
    acts = model.prepare(torch.tensor([[1.0, 1.0]]))
    g = torch.tensor([[0.5, 0.0]])
    ctx = LossContext(model, acts, CausalImportances({"fc": g}, {"fc": g}), config, 0.0, None)
    cfg = PGDEval(n_steps=1, step_size=1.0)
    assert (cfg.init, cfg.mask_scope) == ("random", "shared_across_batch")
    with torch.no_grad():  # as in evaluation: the ascent turns gradients back on itself
        assert pgd_recon(ctx, cfg, "all").item() == pytest.approx(6.25)


def test_evaluation_reports_pgd_recon_and_the_lm_figures_under_pgd_masks():
    from spd_core.eval.evaluation import evaluate
    from tests.test_component_model import TinyLM

    lm = TinyLM()
    model = ComponentModel(lm, [ModulePattern(module_pattern="head", C=4)], "mlp", [3])
    config = config_from_dict(
        {
            "module_info": [{"module_pattern": "head", "C": 4}],
            "loss_metric_configs": [{"classname": "CIMaskedReconLoss", "coeff": 1.0}],
            "batch_size": 3,
            "steps": 10,
            "output_loss_type": "kl",
            "autocast_bf16": False,
            "eval": {"n_eval_batches": 2, "pgd": {"n_steps": 3}},
        }
    )

    def batch_fn(b, gen):
        return torch.randint(0, 11, (b, 6), generator=gen)

    m = evaluate(model, config, batch_fn, torch.Generator().manual_seed(0), 10, causal_lm=True)
    # the same PGD masks give the KL reported under lm/ and the reconstruction (output loss kl)
    assert m["lm/kl_pgd"] == pytest.approx(m["pgd/recon"], rel=1e-5)
    unrecovered = (m["lm/ce_pgd"] - m["lm/ce_target"]) / (m["lm/ce_zero"] - m["lm/ce_target"])
    assert m["lm/ce_unrecovered_pgd"] == pytest.approx(unrecovered)
    plain = config.model_copy(update={"eval": config.eval.model_copy(update={"pgd": None})})
    off = evaluate(model, plain, batch_fn, torch.Generator().manual_seed(0), 10, causal_lm=True)
    assert "pgd/recon" not in off and "lm/kl_pgd" not in off


def test_eval_pgd_is_off_by_default_and_bad_settings_are_named():
    base = {
        "module_info": [{"module_pattern": "fc*", "C": 4}],
        "loss_metric_configs": [{"classname": "CIMaskedReconLoss", "coeff": 1.0}],
        "batch_size": 8,
        "steps": 1,
    }
    assert config_from_dict(base).eval.pgd is None
    on = config_from_dict({**base, "eval": {"pgd": {}}}).eval.pgd
    assert (on.n_steps, on.step_size) == (20, 0.1)
    with pytest.raises(ConfigError, match=r"eval\.pgd\.n_steps: Input should be greater than 0"):
        config_from_dict({**base, "eval": {"pgd": {"n_steps": 0}}})
