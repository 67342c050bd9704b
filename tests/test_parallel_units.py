"""Pure pieces of distributed decomposition, on one process: shard arithmetic, exact save and
restore of the training state, run-path checks and address probing."""

from __future__ import annotations

import socket
from dataclasses import replace

import pytest
import torch

from services.ray_cluster import ClusterError, check_reachable
from spd_core.presets import resolve_config
from spd_core.store import StoreError
from spd_core.task import DecompositionTask
from spd_core.task.toy import toy_task
from spd_core.train import training_state
from spd_core.train.checkpoints import check_run_paths, default_checkpoint_every
from spd_core.train.loop import TrainingState, new_generators, run_steps
from spd_core.train.parallel.sharding import full_trainable_state, rows_per_shard, shard_rows
from spd_core.train.progress import ProgressEvent
from spd_core.train.run import resume
from spd_core.train.setup import build_component_model
from spd_core.train.single_process import decompose
from spd_core.train.step import make_optimizer


@pytest.mark.parametrize(
    ("C", "world", "expected"),
    [
        (20, 2, [(0, 10), (10, 20)]),
        (5, 2, [(0, 3), (3, 5)]),
        (7, 3, [(0, 3), (3, 6), (6, 7)]),
        (1, 2, [(0, 1), (1, 1)]),
    ],
)
def test_shard_rows_split_like_fsdp(C, world, expected):
    assert [shard_rows(C, world, r) for r in range(world)] == expected
    assert rows_per_shard(C, world) == expected[0][1]


@pytest.fixture(scope="module")
def tms(tmp_path_factory):
    config = resolve_config("tms-5-2").model_copy(
        update={"steps": 12, "batch_size": 64, "train_log_freq": 4}
    )
    return config, toy_task(config, torch.device("cpu"), tmp_path_factory.mktemp("cache"))


def _state(config, task) -> TrainingState:
    model = build_component_model(config, task)
    data, masks = new_generators(config, torch.device("cpu"))
    return TrainingState(model, make_optimizer(model, 1e-3), data, masks)


def _params(state: TrainingState) -> dict[str, torch.Tensor]:
    return {k: v.clone() for k, v in state.model.state_dict().items()}


def test_only_the_rank_that_keeps_the_gathered_state_holds_it(tms):
    config, task = tms
    model = build_component_model(config, task)
    kept = full_trainable_state(model)
    assert set(kept) == {k for k in model.state_dict() if not k.startswith("target.")}
    assert all(torch.equal(v, model.state_dict()[k]) for k, v in kept.items())
    assert full_trainable_state(model, keep=False) == {}


def test_restored_state_continues_bitwise_like_the_uninterrupted_run(tms, tmp_path):
    """Stochastic masks and data: only an exact restore of RNGs, Adam and step reproduces it."""
    config, task = tms
    straight = _state(config, task)
    run_steps(straight, config, task)

    saving = _state(config, task)
    run_steps(saving, config, task, after_step=lambda s: _save_at(s, 6, tmp_path))
    resumed = _state(config, task)  # fresh init, fresh generators: everything must come back
    training_state.load(resumed, tmp_path, rank=0, world_size=1)
    assert resumed.step == 6
    run_steps(resumed, config, task)
    for key, value in _params(straight).items():
        assert torch.equal(value, _params(resumed)[key]), key


def _stream(task: DecompositionTask) -> DecompositionTask:
    """The task's data as a stream with its own RNG (like a text stream): it ignores the
    checkpointed generator, so only skip_batches can put a restarted stream back in place."""
    own = torch.Generator().manual_seed(123)

    def skip(n_batches: int, batch_size: int) -> None:
        for _ in range(n_batches):
            task.batch_fn(batch_size, own)

    return replace(task, batch_fn=lambda b, _gen: task.batch_fn(b, own), skip_batches=skip)


def test_resume_moves_a_generator_free_stream_past_the_batches_already_used(tms, tmp_path):
    config, task = tms
    straight = _state(config, task)
    run_steps(straight, config, _stream(task))

    saving = _state(config, task)
    run_steps(saving, config, _stream(task), after_step=lambda s: _save_at(s, 6, tmp_path))
    resumed, restarted = _state(config, task), _stream(task)  # a fresh stream, as after a crash
    resume(resumed, restarted, config, tmp_path, rank=0, world=1)
    assert (resumed.step, resumed.restarts) == (6, 1)
    run_steps(resumed, config, restarted)
    for key, value in _params(straight).items():
        assert torch.equal(value, _params(resumed)[key]), key


def _save_at(state: TrainingState, step: int, directory) -> None:
    if state.step == step:
        training_state.save(state, directory, rank=0, world_size=1)


def test_checkpoint_from_other_world_size_is_refused(tms, tmp_path):
    config, task = tms
    state = _state(config, task)
    training_state.save(state, tmp_path, rank=0, world_size=2)
    with pytest.raises(Exception, match="--workers 2"):
        training_state.load(_state(config, task), tmp_path, rank=0, world_size=1)


def test_default_checkpoint_every_is_a_tenth_on_log_boundaries(tms):
    config, _ = tms
    big = config.model_copy(update={"steps": 10_000, "train_log_freq": 100})
    assert default_checkpoint_every(big) == 1000
    tiny = config.model_copy(update={"steps": 12, "train_log_freq": 4})
    assert default_checkpoint_every(tiny) == 4


def test_existing_stores_are_refused_with_the_way_out(tms, tmp_path):
    config, task = tms
    done = tmp_path / "done.zarr"
    decompose(config, task, out=done)
    ckpt = tmp_path / "ckpt"
    with pytest.raises(StoreError, match=r"complete factor store.*--overwrite"):
        check_run_paths(done, ckpt, config, resume=False, overwrite=False)
    with pytest.raises(StoreError, match="already complete"):
        check_run_paths(done, ckpt, config, resume=True, overwrite=False)
    with pytest.raises(StoreError, match="no store"):
        check_run_paths(tmp_path / "none.zarr", ckpt, config, resume=True, overwrite=False)
    check_run_paths(done, ckpt, config, resume=False, overwrite=True)  # allowed


def test_unreachable_address_fails_fast():
    with socket.socket() as s:  # a port nobody listens on: bind, then close
        s.bind(("127.0.0.1", 0))
        port = s.getsockname()[1]
    with pytest.raises(ClusterError, match="nothing answers"):
        check_reachable(f"127.0.0.1:{port}", timeout_s=2)
    with pytest.raises(ClusterError, match="not host:port"):
        check_reachable("just-a-name")


def test_progress_line_before_any_rate():
    line = ProgressEvent(10, 100, {"total": 1.0}, {"fc": 0.5}, 0.0, float("inf")).line()
    assert "ETA --:--:--" in line and "step  10/100" in line


def test_a_checkpoint_dir_that_is_not_one_is_never_taken(tms, tmp_path):
    config, _ = tms
    precious = tmp_path / "notes"
    precious.mkdir()
    (precious / "thesis.tex").write_text("keep me")
    with pytest.raises(StoreError, match="not a checkpoint directory"):
        check_run_paths(tmp_path / "new.zarr", precious, config, resume=False, overwrite=True)
    assert (precious / "thesis.tex").exists()
    stale = tmp_path / "old.zarr.checkpoints"
    (stale / "checkpoint_2026-01-01").mkdir(parents=True)
    with pytest.raises(StoreError, match="--overwrite to discard"):
        check_run_paths(tmp_path / "old.zarr", stale, config, resume=False, overwrite=False)
