"""Config validation: bad input fails at load, naming the problem."""

import pytest

from spd_core.config import ConfigError, config_from_dict, load_config
from spd_core.hf.packaged import PACKAGED_MODELS
from spd_core.presets import preset_names, resolve_config
from spd_core.targets.tiny_llama.spec import TINY_LLAMAS

BASE = {
    "module_info": [{"module_pattern": "fc1", "C": 5}],
    "loss_metric_configs": [{"classname": "StochasticReconLoss", "coeff": 1.0}],
    "batch_size": 8,
    "steps": 10,
}


def test_defaults_follow_the_reference():
    cfg = config_from_dict(BASE)
    assert cfg.ci_fn_type == "vector_mlp" and cfg.ci_fn_hidden_dims == [8]
    assert cfg.sigmoid_type == "leaky_hard" and cfg.use_delta_component
    assert cfg.n_mask_samples == 1 and cfg.sampling == "continuous"
    assert cfg.faithfulness_warmup_steps == 0 and cfg.autocast_bf16
    assert not cfg.compile_ci_fn


def test_compile_ci_fn_outside_the_one_hidden_layer_mlp_is_named():
    with pytest.raises(ConfigError, match=r"compile_ci_fn needs ci_fn_type 'mlp'.*'vector_mlp'"):
        config_from_dict({**BASE, "compile_ci_fn": True})
    two_layers = {**BASE, "compile_ci_fn": True, "ci_fn_type": "mlp", "ci_fn_hidden_dims": [4, 4]}
    with pytest.raises(ConfigError, match=r"exactly one hidden layer.*\[4, 4\]"):
        config_from_dict(two_layers)
    assert config_from_dict({**two_layers, "ci_fn_hidden_dims": [16]}).compile_ci_fn


def test_unknown_field_is_named():
    with pytest.raises(ConfigError, match=r"learning_rate: unknown field"):
        config_from_dict({**BASE, "learning_rate": 1e-3})


def test_nonpositive_C_is_named():
    bad = {**BASE, "module_info": [{"module_pattern": "fc1", "C": 0}]}
    with pytest.raises(ConfigError, match=r"module_info\.0\.C: Input should be greater than 0"):
        config_from_dict(bad)


def test_unknown_loss_class_is_named():
    bad = {**BASE, "loss_metric_configs": [{"classname": "MagicLoss", "coeff": 1.0}]}
    with pytest.raises(ConfigError, match="MagicLoss"):
        config_from_dict(bad)


def test_unknown_preset_lists_presets():
    with pytest.raises(ConfigError, match=r"unknown preset 'tms-9-9'.*tms-5-2"):
        resolve_config("tms-9-9")


def test_missing_and_malformed_files(tmp_path):
    with pytest.raises(ConfigError, match="does not exist"):
        load_config(tmp_path / "nope.yaml")
    bad = tmp_path / "bad.yaml"
    bad.write_text("steps: [1,\n")
    with pytest.raises(ConfigError, match="not valid YAML"):
        load_config(bad)


def test_every_preset_validates():
    names = preset_names()
    assert {
        "tms-5-2",
        "tms-40-10",
        "tms-5-2-id",
        "tms-40-10-id",
        "resid-mlp-1",
        "resid-mlp-2",
        "resid-mlp-3",
        "induction-2l",
        "tiny-llama-2l",
    } <= set(names)
    for name in names:
        target = resolve_config(name).target
        if target.kind == "toy":
            assert target.name == name
        else:
            assert target.model in {*PACKAGED_MODELS, *TINY_LLAMAS}, name


def test_tied_components_are_pairs_of_module_names():
    cfg = config_from_dict({**BASE, "tied_components": [["fc1", "fc2"]]})
    assert cfg.tied_components == [("fc1", "fc2")]
    with pytest.raises(ConfigError, match=r"tied_components\.0: Tuple should have at most 2 items"):
        config_from_dict({**BASE, "tied_components": [["fc1", "fc2", "fc3"]]})
