"""`spd inspect`: the summary table, --json, --plot figures, errors, and the heat-map ordering."""

from __future__ import annotations

import contextlib
import io
import json
import shutil
from pathlib import Path

import matplotlib.image as mpimg
import numpy as np
import pytest
import torch

from services.cli import main
from spd_core.eval.figures import heatmap_columns, significant_columns
from spd_core.presets import resolve_config
from spd_core.store import SCHEMA_VERSION, FactorStore, ModuleLayout, StoreWriter
from spd_core.task.toy import toy_task
from spd_core.train.single_process import decompose

PNG_SIGNATURE = b"\x89PNG\r\n\x1a\n"


@pytest.fixture(scope="session")
def toy_store(tmp_path_factory) -> Path:
    """A short tms-5-2-id decomposition (identity and dense CI patterns, curves at 10 and 20).

    The target comes from the default target cache, so only the first run ever trains it."""
    config = resolve_config("tms-5-2-id").model_copy(update={"steps": 20, "train_log_freq": 10})
    task = toy_task(config, torch.device("cpu"))
    out = tmp_path_factory.mktemp("inspect") / "tms.zarr"
    decompose(config, task, out=out)
    return out


@pytest.fixture(scope="session")
def plotted(toy_store, tmp_path_factory):
    """One `spd inspect --json --plot` run: (exit code, parsed JSON, plot dir, stderr)."""
    out_dir = tmp_path_factory.mktemp("figures") / "new" / "dir"
    stdout, stderr = io.StringIO(), io.StringIO()
    with contextlib.redirect_stdout(stdout), contextlib.redirect_stderr(stderr):
        code = main(["inspect", str(toy_store), "--json", "--plot", str(out_dir)])
    return code, json.loads(stdout.getvalue()), out_dir, stderr.getvalue()


def test_table_names_every_module_with_its_l0(toy_store, capsys):
    assert main(["inspect", str(toy_store)]) == 0
    out = capsys.readouterr().out
    store = FactorStore.open(toy_store)
    lines = out.splitlines()
    assert set(store.modules) == {"linear1", "linear2", "hidden_layers.0"}
    for name, layout in store.modules.items():
        row = next(line for line in lines if line.startswith(name + " "))
        l0 = store.metrics[f"l0/{name}"]
        assert f"{l0:.4g}" in row.split()
        assert row.split()[1:3] == [layout.kind, str(layout.C)]
    assert "identity" in out and "dense" in out  # CI-pattern errors of both kinds
    assert "loss/StochasticReconLoss" in out and "mmcs/linear1" in out
    assert "tms-5-2-id" in out and "complete      yes" in out
    assert f"schema        {SCHEMA_VERSION}" in out
    assert "integrity     every file listed in the manifest is present" in out


def test_json_has_stable_keys_and_the_right_sizes(toy_store, capsys):
    assert main(["inspect", str(toy_store), "--json"]) == 0
    data = json.loads(capsys.readouterr().out)
    assert {"path", "complete", "schema", "modules", "metrics"} <= set(data)
    assert data["complete"] is True and data["schema"] == SCHEMA_VERSION
    assert data["path"] == str(FactorStore.open(toy_store).path)
    assert data["target"]["name"] == "tms-5-2-id" and data["steps"] == 20
    store = FactorStore.open(toy_store)
    assert set(data["modules"]) == set(store.modules)
    for name, layout in store.modules.items():
        entry = data["modules"][name]
        assert entry["C"] == layout.C == 20
        assert (entry["d_in"], entry["d_out"], entry["kind"]) == (
            layout.d_in,
            layout.d_out,
            layout.kind,
        )
        assert entry["l0"] == pytest.approx(store.metrics[f"l0/{name}"])
        assert entry["alive"] == store.metrics[f"alive/{name}"]
    assert "identity_ci_error" in data["modules"]["linear1"]
    assert "dense_ci_error" in data["modules"]["hidden_layers.0"]
    assert data["metrics"]["ci_error/total"] == store.metrics["ci_error/total"]


def test_plot_writes_readable_pngs(plotted):
    code, data, out_dir, stderr = plotted
    assert code == 0, stderr
    expected = {
        "ci_linear1.png",
        "ci_linear2.png",
        "ci_hidden_layers.0.png",
        "tms_columns.png",
        "training_curves.png",
    }
    assert {Path(p).name for p in data["figures"]} == expected
    assert data["figures_skipped"] == {}
    for name in expected:
        path = out_dir / name
        raw = path.read_bytes()
        assert raw.startswith(PNG_SIGNATURE) and len(raw) > 1000
        image = mpimg.imread(path)
        assert image.ndim == 3 and image.shape[0] > 100 and image.shape[1] > 100
        assert image[..., :3].std() > 0  # not a blank canvas


def test_plot_in_table_mode_prints_paths_and_skips(tmp_path, capsys):
    # A store without a toy target's features: only the training curves can be drawn.
    path = _incomplete_store(tmp_path / "half.zarr", curves=True)
    figs = tmp_path / "figs"
    assert main(["inspect", str(path), "--allow-incomplete", "--plot", str(figs)]) == 0
    out = capsys.readouterr()
    assert f"figures in {figs}" in out.out
    assert str(figs / "training_curves.png") in out.out
    assert (figs / "training_curves.png").read_bytes().startswith(PNG_SIGNATURE)
    assert "spd inspect: skipped ci_*.png" in out.err
    assert sorted(p.name for p in figs.iterdir()) == ["training_curves.png"]


def test_plot_into_a_file_is_a_clear_error(toy_store, tmp_path, capsys):
    target = tmp_path / "a-file.png"
    target.write_text("not a folder")
    assert main(["inspect", str(toy_store), "--plot", str(target)]) == 2
    err = capsys.readouterr().err
    assert err.startswith("spd inspect: error: --plot") and "not a directory" in err
    assert "Traceback" not in err


def test_missing_store_is_exit_2_with_the_store_message(tmp_path, capsys):
    missing = tmp_path / "nothing.zarr"
    assert main(["inspect", str(missing)]) == 2
    err = capsys.readouterr().err
    assert err.startswith(f"spd inspect: error: no factor store at {missing}")
    assert "Traceback" not in err


def _incomplete_store(path: Path, curves: bool = False) -> Path:
    writer = StoreWriter.create(
        path,
        modules={"fc": ModuleLayout(kind="linear", C=3, d_in=4, d_out=2)},
        config={"steps": 5, "target": {"kind": "toy", "name": "tms-5-2"}},
        target_spec={"kind": "toy", "name": "tms-5-2"},
    )
    writer.write_factor_rows("fc", "U", 0, np.ones((3, 2), np.float32))
    writer.write_factor_rows("fc", "V", 0, np.ones((3, 4), np.float32))
    if curves:
        writer.append_curves(1, {"loss/total": 1.0, "l0/fc": 2.0, "mmcs/fc": 0.75})
        writer.append_curves(2, {"loss/total": 0.5, "l0/fc": 1.5})  # no evaluation at step 2
    return path


def test_incomplete_store_is_exit_2_unless_allowed(tmp_path, capsys):
    path = _incomplete_store(tmp_path / "half.zarr")
    assert main(["inspect", str(path)]) == 2
    err = capsys.readouterr().err
    assert err.startswith("spd inspect: error: factor store") and "is incomplete" in err
    assert "--allow-incomplete" in err
    assert main(["inspect", str(path), "--allow-incomplete"]) == 0
    out = capsys.readouterr().out
    assert "complete      no" in out and "fc" in out
    assert "training      nothing logged yet" in out


def test_an_unfinished_store_shows_how_far_its_run_got(tmp_path, capsys):
    path = _incomplete_store(tmp_path / "running.zarr", curves=True)
    assert main(["inspect", str(path), "--allow-incomplete"]) == 0
    out = capsys.readouterr().out
    assert "training      2 of 5 steps logged" in out
    lines = {line.split()[0]: line.split()[1:] for line in out.splitlines() if line.strip()}
    assert lines["loss/total"] == ["0.5", "(step", "2)"]
    assert lines["mmcs/fc"] == ["0.75", "(step", "1)"]  # the latest evaluation, not NaN
    assert main(["inspect", str(path), "--allow-incomplete", "--json"]) == 0
    training = json.loads(capsys.readouterr().out)["training"]
    assert training["last_step"] == 2
    assert training["latest"]["l0/fc"] == {"step": 2, "value": 1.5}
    assert training["latest"]["mmcs/fc"] == {"step": 1, "value": 0.75}


def test_corrupt_store_is_exit_2_without_traceback(toy_store, tmp_path, capsys):
    broken = tmp_path / "broken.zarr"
    shutil.copytree(toy_store, broken)
    (broken / "zarr.json").write_text("{ not json")
    assert main(["inspect", str(broken)]) == 2
    err = capsys.readouterr().err
    assert err.startswith("spd inspect: error: ") and "Traceback" not in err


def test_help_explains_the_table_json_and_figures(capsys):
    with pytest.raises(SystemExit) as exit_info:
        main(["inspect", "--help"])
    assert exit_info.value.code == 0
    text = capsys.readouterr().out
    for word in (
        "--json",
        "--plot",
        "ci_<module>.png",
        "tms_columns.png",
        "training_curves.png",
        "alive",
        "L0",
        "--allow-incomplete",
        "exit status 2",
    ):
        assert word in text


def test_identity_heatmap_order_puts_the_diagonal_in_front():
    rng = np.random.default_rng(0)
    n, C = 5, 9
    ci = np.zeros((n, C), np.float32)
    perm = rng.permutation(C)
    ci[np.arange(n), perm[:n]] = 1.0  # input i uses component perm[i]
    ci[0, perm[5]] = 0.05  # below the threshold: stays hidden
    columns, hidden = heatmap_columns(ci, "identity")
    assert list(columns) == list(perm[:n])
    np.testing.assert_array_equal(ci[:, columns], np.eye(n))
    assert hidden == C - n


def test_dense_heatmap_order_sorts_by_mass_and_hides_dead_columns():
    ci = np.array([[0.2, 0.0, 1.0, 0.5], [0.2, 0.05, 1.0, 0.0]], np.float32)
    columns, hidden = heatmap_columns(ci, "dense")
    assert list(columns) == [2, 3, 0] and hidden == 1


def test_significant_columns_match_the_target_columns():
    W = np.array([[1.0, 0.0, -0.5], [0.0, 2.0, 0.5]])  # (n_hidden 2, n_features 3)
    U = np.zeros((5, 2))
    V = np.zeros((5, 3))
    for j, c in enumerate([3, 0, 4]):  # component c is exactly column j
        U[c] = W[:, j] / 2
        V[c, j] = 2.0
    V[1, 0] = 1e-4  # negligible component
    U[1] = [1e-3, 0]
    matches = significant_columns(W, U, V)
    assert [(m.c, m.j) for m in matches] == [(3, 0), (0, 1), (4, 2)]
    for m in matches:
        np.testing.assert_allclose(m.column, W[:, m.j])
        assert m.cos == pytest.approx(1.0) and m.norm_ratio == pytest.approx(1.0)


def test_component_of_a_toy_needs_a_harvest_and_a_well_formed_name(toy_store, capsys):
    assert main(["inspect", str(toy_store), "--component", "linear1:0"]) == 2
    assert "reads its harvest, and" in capsys.readouterr().err  # and says to run spd harvest
    assert main(["inspect", str(toy_store), "--component", "linear1"]) == 2
    assert "write MODULE:INDEX" in capsys.readouterr().err
