"""`spd decompose --no-ray`: one process with checkpoints, and a stopped run resumes exactly."""

from __future__ import annotations

import shutil
from types import SimpleNamespace

import numpy as np
import pytest
import torch

from services.cli import main
from services.commands.decompose import interrupted_message
from services.train.checkpoints import RAY_SNAPSHOT_NAME, check_job_paths
from spd_core.presets import resolve_config
from spd_core.store import FactorStore, StoreError
from spd_core.store.location import Location
from spd_core.task.toy import toy_task
from spd_core.train.checkpoints import latest_local_checkpoint, save_local_checkpoint
from spd_core.train.loop import TrainingState, new_generators
from spd_core.train.run import WorkerPlan, run_worker
from spd_core.train.setup import build_component_model, create_store
from spd_core.train.single_process import decompose
from spd_core.train.step import make_optimizer
from tests.stored_params import stored_params


@pytest.fixture(scope="module")
def cache_dir(tmp_path_factory):
    return tmp_path_factory.mktemp("spd-cache")  # the trained target, shared with the CLI test


@pytest.fixture(scope="module")
def tms(cache_dir):
    config = resolve_config("tms-5-2").model_copy(
        update={"steps": 40, "batch_size": 64, "train_log_freq": 5, "eval_freq": 20}
    )
    return config, toy_task(config, torch.device("cpu"), cache_dir)


def _stop_at(step: int):
    def progress(event) -> None:
        if event.step == step:
            raise KeyboardInterrupt

    return progress


def test_a_stopped_run_resumes_to_exactly_the_uninterrupted_result(tms, tmp_path):
    config, task = tms
    decompose(config, task, out=tmp_path / "whole.zarr")
    out = tmp_path / "cut.zarr"
    with pytest.raises(KeyboardInterrupt):
        decompose(config, task, out=out, checkpoint_every=10, progress=_stop_at(25))
    with pytest.raises(StoreError, match="incomplete"):
        FactorStore.open(out)
    ckpt_dir = tmp_path / "cut.zarr.checkpoints"
    names = sorted(p.name for p in ckpt_dir.iterdir())
    assert names == ["checkpoint_step_000000010", "checkpoint_step_000000020"]  # keeps two

    metrics = decompose(config, task, out=out, checkpoint_every=10, resume=True).metrics
    assert metrics["restarts"] == 1 and metrics["workers"] == 1
    assert not ckpt_dir.exists()  # a finished run needs none
    store = FactorStore.open(out)
    assert store.curves()["step"].tolist() == list(range(5, 41, 5))  # 25 logged once, not twice
    whole, resumed = stored_params(tmp_path / "whole.zarr"), stored_params(out)
    assert whole.keys() == resumed.keys()
    for key in whole:  # the same RNG draws, Adam moments and steps: equal bit for bit
        np.testing.assert_array_equal(resumed[key], whole[key], err_msg=key)
    assert (
        store.metrics["mmcs/linear1"]
        == FactorStore.open(tmp_path / "whole.zarr").metrics["mmcs/linear1"]
    )


def _state(config, task, step: int) -> TrainingState:
    model = build_component_model(config, task)
    data, masks = new_generators(config, torch.device("cpu"))
    return TrainingState(model, make_optimizer(model, 1e-3), data, masks, step=step)


def test_checkpoints_keep_the_newest_and_never_resume_a_half_written_one(tms, tmp_path):
    config, task = tms
    leftover = tmp_path / "checkpoint_step_000000030.partial"  # a save that crashed midway
    leftover.mkdir()
    (leftover / "rank-00000.pt").write_bytes(b"truncated")
    assert latest_local_checkpoint(tmp_path) is None
    for step in (10, 20):
        save_local_checkpoint(_state(config, task, step), tmp_path)
    newest = Location.of(tmp_path / "checkpoint_step_000000020")
    assert latest_local_checkpoint(tmp_path) == (20, newest)
    save_local_checkpoint(_state(config, task, 100), tmp_path)
    names = sorted(p.name for p in tmp_path.iterdir())
    assert names == ["checkpoint_step_000000020", "checkpoint_step_000000100"]
    assert latest_local_checkpoint(tmp_path)[0] == 100  # by step, though "1…" sorts before "2…"


def test_resume_names_the_runner_a_run_was_started_with(tms, tmp_path):
    config, task = tms
    out = tmp_path / "run.zarr"
    with pytest.raises(KeyboardInterrupt):
        decompose(config, task, out=out, checkpoint_every=10, progress=_stop_at(15))
    ckpt_dir = tmp_path / "run.zarr.checkpoints"
    with pytest.raises(StoreError, match=r"started with --no-ray.*resume it with --no-ray"):
        check_job_paths(out, ckpt_dir, config, resume=True, overwrite=False)
    ray_dir = tmp_path / "ray-ckpts"
    (ray_dir / "checkpoint_2026-11-27_01-02-03.456789").mkdir(parents=True)
    with pytest.raises(StoreError, match=r"no checkpoint of a --no-ray run.*without --no-ray"):
        decompose(config, task, out=out, checkpoint_dir=ray_dir, resume=True)
    # a checkpoint Ray's controller never registered is not resumed: say so, not "resuming"
    with pytest.raises(StoreError, match=r"Ray registered no checkpoint.*--overwrite"):
        check_job_paths(out, ray_dir, config, resume=True, overwrite=False)
    (ray_dir / RAY_SNAPSHOT_NAME).write_text("{}")
    check_job_paths(out, ray_dir, config, resume=True, overwrite=False)
    with pytest.raises(StoreError, match=r"before its first checkpoint.*--overwrite"):
        decompose(config, task, out=out, checkpoint_dir=tmp_path / "none", resume=True)


def test_cli_resumes_a_stopped_no_ray_run(tmp_path, cache_dir, monkeypatch, capsys):
    monkeypatch.setenv("SPD_CACHE_DIR", str(cache_dir))
    out, ckpt = tmp_path / "cli.zarr", tmp_path / "elsewhere"
    config = resolve_config("tms-5-2").model_copy(update={"steps": 30})  # as the CLI builds it
    task = toy_task(config, torch.device("cpu"), cache_dir)
    with pytest.raises(KeyboardInterrupt):
        # its only log: the last
        decompose(
            config, task, out=out, checkpoint_every=10, checkpoint_dir=ckpt, progress=_stop_at(30)
        )
    args = ["decompose", "tms-5-2", "--out", str(out), "--steps", "30", "--no-ray"]
    assert main([*args, "--checkpoint-dir", str(ckpt), "--resume"]) == 0
    printed = capsys.readouterr().out
    assert "resuming tms-5-2" in printed and "step 30/30" in printed
    assert FactorStore.open(out).metrics["restarts"] == 1
    assert not ckpt.exists()  # removed with the finished run
    assert main(args) == 2
    assert "complete factor store" in capsys.readouterr().err
    assert main([*args, "--resume"]) == 2
    assert "already complete; nothing to continue" in capsys.readouterr().err


def test_a_restart_without_a_checkpoint_starts_the_curves_over(tms, tmp_path):
    """A worker that dies before the first checkpoint is restarted from scratch (Ray does this
    on its own): the store must not keep the dead run's curve records beside the new ones."""
    config, task = tms
    out = tmp_path / "restart.zarr"
    create_store(out, build_component_model(config, task), config, task, overwrite=False)
    plan = WorkerPlan(config, out, "ddp", 0, 1, torch.device("cpu"), checkpoint_every=1000)

    def stop(record) -> None:
        if record.step == 25:
            raise KeyboardInterrupt

    with pytest.raises(KeyboardInterrupt):
        run_worker(plan, task, on_log=stop)
    assert FactorStore.open(out, allow_incomplete=True).curves()["step"].tolist() == [
        5,
        10,
        15,
        20,
        25,
    ]
    run_worker(plan, task)
    assert FactorStore.open(out).curves()["step"].tolist() == list(range(5, 41, 5))


def test_an_interrupted_cli_run_says_how_to_go_on(tms, tmp_path, monkeypatch, capsys):
    config, task = tms
    out = tmp_path / "stopped.zarr"

    def stopped_run(config, task, *, out, **options):  # Ctrl-C after step 25
        options.update(checkpoint_every=10, progress=_stop_at(25))
        decompose(config, task, out=out, **options)

    monkeypatch.setattr("services.commands.decompose.make_task", lambda *a: task)
    monkeypatch.setattr("services.commands.decompose.decompose", stopped_run)
    monkeypatch.setattr("services.commands.decompose.resolve_config", lambda name: config)
    assert main(["decompose", "tms-5-2", "--out", str(out), "--no-ray", "--quiet"]) == 130
    err = capsys.readouterr().err
    assert f"{out} is left incomplete; continue it with --resume (from step 20)" in err

    args = SimpleNamespace(out=str(out), checkpoint_dir=None, no_ray=True)
    shutil.rmtree(f"{out}.checkpoints")
    assert "before its first checkpoint; start it again with --overwrite" in (
        interrupted_message(args)
    )
    ray_ckpt = tmp_path / "ray"
    (ray_ckpt / "checkpoint_2026-11-27_03-00-00.000000").mkdir(parents=True)
    ray_args = SimpleNamespace(out=str(out), checkpoint_dir=str(ray_ckpt), no_ray=False)
    assert "before its first checkpoint" in interrupted_message(ray_args)  # saved, unregistered
    (ray_ckpt / RAY_SNAPSHOT_NAME).write_text("{}")
    assert "--resume (from its last checkpoint)" in interrupted_message(ray_args)
    missing = SimpleNamespace(out=str(tmp_path / "never.zarr"), checkpoint_dir=None, no_ray=True)
    assert interrupted_message(missing).startswith("interrupted before")
