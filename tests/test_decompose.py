"""End to end on one process: a toy preset decomposed into a store, read back, and the CLI."""

import json

import numpy as np
import pytest
import torch

from services.cli import main
from spd_core.config import ConfigError
from spd_core.eval.evaluation import one_hot_ci
from spd_core.loading import load_component_model
from spd_core.model.ci_mlp_compiled import compiled_kernels_work, compiled_per_component_gelu_mlp
from spd_core.presets import resolve_config
from spd_core.store import FactorStore, StoreError
from spd_core.task.toy import toy_task
from spd_core.train.parallel.sharding import check_fsdp_supports
from spd_core.train.single_process import decompose


@pytest.fixture(scope="module")
def cache_dir(tmp_path_factory):
    return tmp_path_factory.mktemp("spd-cache")


@pytest.fixture(scope="module")
def short_run(tmp_path_factory, cache_dir):
    config = resolve_config("tms-5-2").model_copy(
        update={"steps": 60, "train_log_freq": 20, "eval_freq": 40}
    )
    task = toy_task(config, torch.device("cpu"), cache_dir)
    out = tmp_path_factory.mktemp("runs") / "tms.zarr"
    events = []
    result = decompose(config, task, out=out, progress=events.append)
    return config, task, result, out, events


def test_store_is_complete_and_holds_the_trained_factors(short_run):
    _config, _, result, out, _ = short_run
    store = FactorStore.open(out)
    assert store.complete
    assert set(store.modules) == {"linear1", "linear2"}
    comp = result.model.components_of("linear1")
    np.testing.assert_array_equal(store.U("linear1"), comp.U.detach().numpy())
    np.testing.assert_array_equal(store.V("linear1"), comp.V.detach().numpy())
    assert store.U("linear1").shape == (20, 2) and store.V("linear1").shape == (20, 5)
    assert store.metrics["l0/linear1"] == pytest.approx(result.metrics["l0/linear1"])
    assert store.config["steps"] == 60


def test_store_reloads_to_the_same_model(short_run):
    _, _, result, out, _ = short_run
    model, _ = load_component_model(out)
    ci_loaded = one_hot_ci(model, 5)
    ci_trained = one_hot_ci(result.model, 5)
    for name in ci_trained:
        torch.testing.assert_close(ci_loaded[name], ci_trained[name])


def test_curves_and_progress_are_recorded(short_run):
    _, _, _, out, events = short_run
    assert [e.step for e in events] == [20, 40, 60]
    assert all("StochasticReconLoss" in e.terms for e in events)
    # the first line has no rate yet (building and the warm-up are not training steps): its ETA
    # is unknown rather than wrong; later lines measure from it
    assert events[0].steps_per_s == 0 and "ETA --:--:--" in events[0].line()
    assert all(e.steps_per_s > 0 for e in events[1:])
    curves = FactorStore.open(out).curves()
    assert list(curves["step"]) == [20, 40, 60]
    assert np.isfinite(curves["loss/total"]).all()


def test_evaluation_figures_are_logged_every_eval_freq_steps_without_changing_the_run(
    short_run, tmp_path
):
    config, task, _, out, events = short_run
    assert [bool(e.probes) for e in events] == [False, True, False]  # step 40 only
    assert set(events[1].probes) == {
        "identity_ci_error/linear1",
        "identity_ci_error/linear2",
        "ci_error/total",
        "mmcs/linear1",
        "mmcs_std/linear1",
        "ml2r/linear1",
        "ml2r_std/linear1",
    }
    assert "\n  eval identity_ci_error/linear1=" in events[1].line()
    curves = FactorStore.open(out).curves()
    assert np.isnan(curves["mmcs/linear1"][[0, 2]]).all()
    assert curves["mmcs/linear1"][1] == events[1].probes["mmcs/linear1"]
    # The same run probed at its last step only: the same course, and that probe is the final
    # evaluation's figure (same model state)
    other = tmp_path / "probed-last.zarr"
    decompose(config.model_copy(update={"eval_freq": 60}), task, out=other)
    other_store = FactorStore.open(other)
    np.testing.assert_array_equal(other_store.curves()["loss/total"], curves["loss/total"])
    last = {k: v[-1] for k, v in other_store.curves().items()}
    for key in ("identity_ci_error/linear1", "identity_ci_error/linear2", "mmcs/linear1"):
        assert last[key] == pytest.approx(other_store.metrics[key], rel=1e-6), key


def test_whole_evaluation_during_training_is_recorded_without_changing_the_run(short_run, tmp_path):
    config, task, _, out, _ = short_run
    during = config.model_copy(
        update={
            "eval_freq": 30,  # due at the logged steps 40 and 60
            "eval": config.eval.model_copy(update={"during_training": True}),
        }
    )
    events = []
    store_path = tmp_path / "evaluated.zarr"
    decompose(during, task, out=store_path, progress=events.append)
    store = FactorStore.open(store_path)
    curves = store.curves()
    np.testing.assert_array_equal(
        curves["loss/total"], FactorStore.open(out).curves()["loss/total"]
    )
    assert np.isnan(curves["eval/l0/total"][0]) and np.isfinite(curves["eval/l0/total"][1:]).all()
    # at the last step it is the final evaluation: same model, same held-out batches
    for key in ("l0/total", "l0/linear1", "loss/StochasticReconLoss", "mmcs/linear1"):
        assert curves[f"eval/{key}"][-1] == pytest.approx(store.metrics[key], rel=1e-6), key
    older, last = curves["eval/loss/StochasticReconLoss"][1:]
    assert older != last  # the model of 20 steps before
    line = events[-1].line()
    assert "eval/l0/total=" in line and "eval/l0/linear1" not in line


def test_evaluation_during_training_is_refused_under_fsdp():
    config = resolve_config("tms-5-2-id")
    config = config.model_copy(
        update={"eval": config.eval.model_copy(update={"during_training": True})}
    )
    with pytest.raises(ConfigError, match=r"eval\.during_training"):
        check_fsdp_supports(config)


def test_training_reduces_the_loss(short_run):
    _, _, _, _, events = short_run
    assert events[-1].terms["StochasticReconLoss"] < events[0].terms["StochasticReconLoss"]


def test_compiled_ci_functions_train_like_the_eager_ones(cache_dir):
    config = resolve_config("tms-5-2").model_copy(update={"steps": 20, "train_log_freq": 10})
    task = toy_task(config, torch.device("cpu"), cache_dir)
    runs = {}
    for compiled in (False, True):
        events = []
        run_config = config.model_copy(update={"compile_ci_fn": compiled})
        result = decompose(run_config, task, out=None, progress=events.append)
        runs[compiled] = (result, events)
    fn = runs[True][0].model.ci_fn_of("linear1")
    assert fn.net.fused_op is compiled_per_component_gelu_mlp
    assert compiled_kernels_work() is True  # equal losses must not come from a silent fallback
    for eager_event, compiled_event in zip(runs[False][1], runs[True][1], strict=True):
        for term, value in eager_event.terms.items():
            assert compiled_event.terms[term] == pytest.approx(value, rel=1e-3), term
    eager_model, compiled_model = runs[False][0].model, runs[True][0].model
    for name in eager_model.module_names:
        torch.testing.assert_close(
            compiled_model.components_of(name).U,
            eager_model.components_of(name).U,
            atol=1e-4,
            rtol=1e-3,
        )


def test_interrupted_run_leaves_store_incomplete(tmp_path, cache_dir):
    config = resolve_config("tms-5-2").model_copy(update={"steps": 50, "train_log_freq": 10})
    task = toy_task(config, torch.device("cpu"), cache_dir)

    def interrupt(event):
        if event.step == 20:
            raise KeyboardInterrupt

    with pytest.raises(KeyboardInterrupt):
        decompose(config, task, out=tmp_path / "cut.zarr", progress=interrupt)
    with pytest.raises(StoreError, match="incomplete"):
        FactorStore.open(tmp_path / "cut.zarr")


def test_cli_decompose_and_refusal_to_overwrite(tmp_path, cache_dir, monkeypatch, capsys):
    monkeypatch.setenv("SPD_CACHE_DIR", str(cache_dir))
    out = tmp_path / "cli.zarr"
    assert (
        main(
            ["decompose", "tms-5-2", "--out", str(out), "--steps", "10", "--seed", "3", "--no-ray"]
        )
        == 0
    )
    printed = capsys.readouterr().out
    assert "step 10/10" in printed and "steps/s" in printed and "ETA" in printed
    assert FactorStore.open(out).config["seed"] == 3
    assert main(["decompose", "tms-5-2", "--out", str(out), "--steps", "10", "--no-ray"]) == 2
    assert "pass --overwrite" in capsys.readouterr().err


@pytest.mark.parametrize(
    ("args", "message"),
    [
        (["no-such-preset"], "unknown preset 'no-such-preset'"),
        (["tms-5-2", "--steps", "0"], "--steps must be positive"),
    ],
)
def test_cli_bad_input_fails_before_work(tmp_path, capsys, args, message):
    out = tmp_path / "x.zarr"
    assert main(["decompose", *args, "--out", str(out)]) == 2
    assert message in capsys.readouterr().err
    assert not out.exists()


def test_cli_bad_config_names_the_field(tmp_path, capsys):
    cfg = tmp_path / "bad.yaml"
    data = resolve_config("tms-5-2").model_dump(mode="json")
    data["module_info"] = [{"module_pattern": "linear9", "C": 4}]
    cfg.write_text(json.dumps(data))  # JSON is valid YAML
    assert main(["decompose", str(cfg), "--out", str(tmp_path / "y.zarr"), "--steps", "2"]) == 2
    assert "'linear9' matched nothing" in capsys.readouterr().err
