"""L0 per module, per named group of modules (fnmatch patterns) and in total, in the training
curves and in the evaluation."""

import pytest
import torch

from spd_core.config import ConfigError, config_from_dict
from spd_core.eval.evaluation import evaluate
from spd_core.eval.metrics.ci_l0 import l0_group_members, with_l0_groups
from spd_core.task import DecompositionTask
from spd_core.train.loop import TrainingState, new_generators, run_steps
from spd_core.train.setup import build_component_model
from spd_core.train.step import make_optimizer

MODULES = ["model.layers.0.attn.q", "model.layers.0.mlp.up", "model.layers.1.mlp.up"]


def test_groups_sum_their_modules_and_the_total_sums_every_module():
    per_module = dict(zip(MODULES, [1.5, 2.0, 0.5], strict=True))
    groups = {"layer_0": "model.layers.0.*", "mlp": ["*.mlp.*", "model.layers.1.*"]}
    out = with_l0_groups(per_module, groups)
    assert out["layer_0"] == pytest.approx(3.5)
    assert out["mlp"] == pytest.approx(2.5)  # layers.1.mlp.up matches twice, counts once
    assert out["total"] == pytest.approx(4.0)
    assert {k: out[k] for k in MODULES} == per_module


@pytest.mark.parametrize(
    ("groups", "message"),
    [
        ({"l2": "model.layers.2.*"}, r"l0_groups\.l2: pattern 'model\.layers\.2\.\*' matched no"),
        ({"total": "*"}, r"group name 'total' is taken \(by the total L0\)"),
        ({"model.layers.0.attn.q": "*"}, r"'model\.layers\.0\.attn\.q' is taken \(by a module\)"),
    ],
)
def test_bad_groups_are_refused_naming_the_group(groups, message):
    with pytest.raises(ConfigError, match=message):
        l0_group_members(groups, MODULES)


def _config(groups: dict, **extra):
    return config_from_dict(
        {
            "module_info": [{"module_pattern": "fc*", "C": 3}],
            "loss_metric_configs": [{"classname": "StochasticReconLoss", "coeff": 1.0}],
            "batch_size": 4,
            "steps": 2,
            "train_log_freq": 1,
            "autocast_bf16": False,
            "ci_alive_threshold": 0.0,
            "eval": {"l0_groups": groups, "n_eval_batches": 2},
            **extra,
        }
    )


def _task(two_layer) -> DecompositionTask:
    return DecompositionTask(two_layer, lambda b, g: torch.randn(b, 3, generator=g), {})


def test_a_pattern_matching_no_module_fails_when_the_model_is_built(two_layer):
    with pytest.raises(ConfigError, match=r"pattern 'fc3' matched no decomposed module"):
        build_component_model(_config({"last": "fc3"}), _task(two_layer))


def test_training_curves_and_evaluation_carry_groups_and_total(two_layer):
    config, task = _config({"first": "fc1"}), _task(two_layer)
    model = build_component_model(config, task)
    data, masks = new_generators(config, torch.device("cpu"))
    state = TrainingState(model, make_optimizer(model, 1e-3), data, masks)
    records = []
    run_steps(state, config, task, on_log=records.append)
    for record in records:
        assert record.l0["first"] == record.l0["fc1"]
        assert record.l0["total"] == pytest.approx(record.l0["fc1"] + record.l0["fc2"])
    m = evaluate(model, config, task.batch_fn, torch.Generator().manual_seed(0), step=2)
    assert m["l0/first"] == pytest.approx(m["l0/fc1"])
    assert m["l0/total"] == pytest.approx(m["l0/fc1"] + m["l0/fc2"])
    assert m["l0/total"] > 0
