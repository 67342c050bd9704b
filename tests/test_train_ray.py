"""Decomposition as a Ray Train job on a real local Ray: 2 workers equal one process under ddp
and fsdp (with the target sharded too), a killed worker is replaced and the run resumes exactly,
`--resume` continues a failed run. Each Ray Train run costs ~20 s of start-up here, so each test makes the most of one."""

from __future__ import annotations

import json
import os
import signal
import time
from pathlib import Path

import numpy as np
import pytest
import torch
import zarr
from ray.train import TrainingFailedError
from ray.train.v2._internal.constants import CHECKPOINT_MANAGER_SNAPSHOT_FILENAME

from services.train.checkpoints import RAY_SNAPSHOT_NAME, ray_checkpoint_registered
from services.train.job import JobOptions, run_job
from spd_core.presets import resolve_config
from spd_core.store import FactorStore, StoreError, verify_store
from spd_core.task.toy import toy_task
from spd_core.train.checkpoints import checkpoint_dir_for
from spd_core.train.single_process import decompose
from tests.stored_params import stored_params

pytestmark = pytest.mark.ray

# Deterministic objective (no random masks), so 1 and 2 workers optimise the same function.
DETERMINISTIC = {
    "loss_metric_configs": [
        {"classname": "CIMaskedReconLoss", "coeff": 1.0},
        {"classname": "ImportanceMinimalityLoss", "coeff": 3e-3, "pnorm": 1.0},
    ],
    "steps": 120,
    "batch_size": 256,
    "eval_batch_size": 256,
    "train_log_freq": 10,
    "eval_freq": 60,  # evaluation figures at steps 60 and 120: under fsdp every rank takes part
    # clipping on: under fsdp the norm must be taken over every rank's shard
    "grad_clip_norm_components": 0.01,
    "grad_clip_norm_ci_fns": 0.01,
}
CHECKPOINT_EVERY = 20


def _config(tied: bool = True):
    """The tms-5-2 recipe made deterministic; `tied=False` drops the tie, which fsdp refuses."""
    data = resolve_config("tms-5-2").model_dump()
    data.update(DETERMINISTIC)
    if not tied:
        data["tied_components"] = []
    return type(resolve_config("tms-5-2")).model_validate(data)


@pytest.fixture(scope="module")
def task(tmp_path_factory):
    return toy_task(_config(), torch.device("cpu"), tmp_path_factory.mktemp("cache"))


@pytest.fixture(scope="module")
def one_process(tmp_path_factory, task) -> Path:
    out = tmp_path_factory.mktemp("single") / "one.zarr"
    decompose(_config(), task, out=out)
    return out


@pytest.fixture(scope="module")
def one_process_untied(tmp_path_factory, task) -> Path:
    out = tmp_path_factory.mktemp("single") / "untied.zarr"
    decompose(_config(tied=False), task, out=out)
    return out


@pytest.fixture(scope="module")
def ddp_run(tmp_path_factory, task, ray_session) -> Path:
    """An uninterrupted 2-worker ddp run."""
    out = tmp_path_factory.mktemp("ddp") / "two.zarr"
    run_job(_config(), task, out, _options("ddp"))
    return out


def _options(strategy: str, **kw) -> JobOptions:
    return JobOptions(
        workers=2, strategy=strategy, checkpoint_every=CHECKPOINT_EVERY, cpus_per_worker=1, **kw
    )


def _assert_same_params(a: Path, b: Path, atol: float) -> None:
    pa, pb = stored_params(a), stored_params(b)
    assert pa.keys() == pb.keys()
    for key in pa:
        np.testing.assert_allclose(pa[key], pb[key], rtol=0, atol=atol, err_msg=key)


def test_ddp_two_workers_equal_one_process(ddp_run, one_process):
    _assert_same_params(ddp_run, one_process, atol=1e-6)
    store = FactorStore.open(ddp_run)
    assert store.metrics["workers"] == 2 and store.metrics["restarts"] == 0
    assert store.curves()["step"].tolist() == list(range(10, 121, 10))
    np.testing.assert_array_equal(store.U("linear2"), store.V("linear1"))  # still tied
    # the store is chunked on shard boundaries: each worker wrote whole chunks of C=20 rows
    factor = zarr.open_array(ddp_run / "modules" / "linear1" / "U", mode="r")
    assert factor.chunks == (10, 2)  # (C/2 rows, d_out)
    assert not Path(f"{ddp_run}.checkpoints").exists()  # removed once the store is complete
    manifest = json.loads((ddp_run / "integrity" / "zarr.json").read_text())["attributes"]
    assert "modules/linear1/U/c/1/0" in manifest["files"]  # rank 0 recorded worker 1's chunk
    assert verify_store(ddp_run).verified


def _parent(pid: int) -> int:
    try:
        stat = Path(f"/proc/{pid}/stat").read_text()
    except OSError:
        return 0
    return int(stat.rpartition(")")[2].split()[1])


def _descends_from_this_process(pid: int) -> bool:
    """Whether `pid` runs under this test process (the Ray it started), not another's Ray."""
    while pid > 1:
        pid = _parent(pid)
        if pid == os.getpid():
            return True
    return False


def _train_worker_pids() -> list[int]:
    """The Ray Train workers of this test session's Ray (never those of another session on the
    same machine)."""
    pids = []
    for entry in Path("/proc").iterdir():
        if entry.name.isdigit():
            try:
                cmdline = (entry / "cmdline").read_bytes()
            except OSError:
                continue
            if cmdline.startswith(b"ray::RayTrainWorker") and _descends_from_this_process(
                int(entry.name)
            ):
                pids.append(int(entry.name))
    return pids


class KillOneWorker:
    """A progress callback that SIGKILLs one training worker once the run passes `at_step` and
    Ray has registered a checkpoint of the run writing `out`.

    A worker's `ray.train.report` returns before the controller registers its checkpoint (the
    controller polls the workers); a worker killed in between leaves nothing to resume from.
    """

    def __init__(self, at_step: int, out: Path):
        self.at_step = at_step
        self.ckpt_dir = checkpoint_dir_for(out, None)
        self.killed: int | None = None

    def __call__(self, event) -> None:
        if self.killed is None and event.step >= self.at_step:
            deadline = time.monotonic() + 60
            while not ray_checkpoint_registered(self.ckpt_dir):
                assert time.monotonic() < deadline, "Ray registered no checkpoint within 60 s"
                time.sleep(0.01)
            pids = _train_worker_pids()
            assert pids, "no Ray Train worker process found"
            self.killed = max(pids)
            os.kill(self.killed, signal.SIGKILL)


def test_registered_checkpoints_are_read_from_the_file_ray_writes():
    assert RAY_SNAPSHOT_NAME == CHECKPOINT_MANAGER_SNAPSHOT_FILENAME


def _killed_run(out: Path, task, config) -> Path:
    """A 2-worker fsdp run of `config` in which a worker is killed after the first checkpoint."""
    killer = KillOneWorker(CHECKPOINT_EVERY + 10, out)
    run_job(config, task, out, _options("fsdp", max_failures=2), progress=killer)
    assert killer.killed is not None
    return out


@pytest.fixture(scope="module")
def fsdp_killed(tmp_path_factory, task, ray_session) -> Path:
    return _killed_run(tmp_path_factory.mktemp("fsdp") / "killed.zarr", task, _config(tied=False))


def test_fsdp_with_a_killed_worker_equals_one_process(fsdp_killed, one_process_untied):
    """A worker dies after the first checkpoint: it is replaced, the run resumes from the
    checkpoint and ends with the parameters (and quality) of a run without the failure."""
    out, one_process = fsdp_killed, one_process_untied
    store = FactorStore.open(out)  # complete
    assert store.metrics["restarts"] == 1 and store.metrics["workers"] == 2
    assert store.curves()["step"].tolist() == list(range(10, 121, 10))  # redone, not repeated
    _assert_same_params(out, one_process, atol=1e-6)
    reference = FactorStore.open(one_process).metrics
    for key in ("mmcs/linear1", "ml2r/linear1", "l0/linear1", "alive/linear1"):
        assert store.metrics[key] == pytest.approx(reference[key], abs=1e-5), key
    mmcs = store.curves()["mmcs/linear1"]
    assert np.isfinite(mmcs[[5, 11]]).all() and np.isnan(np.delete(mmcs, [5, 11])).all()
    assert mmcs[11] == pytest.approx(store.metrics["mmcs/linear1"], abs=1e-6)
    factor = zarr.open_array(out / "modules" / "linear2" / "V", mode="r")
    assert factor.chunks == (10, 2)  # FSDP shards: rows [0, 10) and [10, 20)


def test_sharded_target_with_a_killed_worker_equals_unsharded_fsdp(
    tmp_path, task, fsdp_killed, one_process_untied, ray_session
):
    """The target's blocks sharded too (tms-5-2: linear1 and linear2, one unit each): a worker
    killed mid-run is replaced, the run resumes exactly, and it ends with the parameters and
    quality of the 2-worker fsdp run whose target is whole on every worker."""
    config = _config(tied=False).model_copy(update={"shard_target": True})
    out = _killed_run(tmp_path / "sharded.zarr", task, config)
    store = FactorStore.open(out)  # complete
    assert store.metrics["restarts"] == 1 and store.metrics["workers"] == 2
    assert store.curves()["step"].tolist() == list(range(10, 121, 10))
    _assert_same_params(out, fsdp_killed, atol=1e-6)
    reference = FactorStore.open(fsdp_killed).metrics
    for key in ("mmcs/linear1", "ml2r/linear1", "l0/linear1", "alive/linear1"):
        assert store.metrics[key] == pytest.approx(reference[key], abs=1e-5), key
    # float32 bytes held for the target: linear1.weight (2, 5), linear2.weight (5, 2) and
    # linear2.bias (5), and the components' copies of both weights and of the bias. Whole: 50
    # values. Sharded by rows, rank 0 holds the most: 1 row of (2, 5), 3 of (5, 2), 3 of the
    # bias, and of the copies 1 + 3 rows plus the (replicated) bias: 5+6+3+5+6+5 = 30 values.
    whole = FactorStore.open(one_process_untied).metrics["memory/target_bytes_per_worker"]
    assert (whole, store.metrics["memory/target_bytes_per_worker"]) == (200, 120)
    assert reference["memory/target_bytes_per_worker"] == 200  # fsdp alone: the target is whole


def test_resume_continues_a_failed_run(tmp_path, task, one_process, ray_session):
    out = tmp_path / "stopped.zarr"
    killer = KillOneWorker(CHECKPOINT_EVERY + 10, out)
    with pytest.raises(TrainingFailedError):
        run_job(_config(), task, out, _options("ddp", max_failures=0), progress=killer)
    assert killer.killed is not None  # it failed because of the kill, not something else
    with pytest.raises(StoreError, match="incomplete"):
        FactorStore.open(out)
    run_job(_config(), task, out, _options("ddp", resume=True))
    store = FactorStore.open(out)
    assert store.metrics["restarts"] == 1
    assert store.curves()["step"].tolist() == list(range(10, 121, 10))
    _assert_same_params(out, one_process, atol=1e-6)


def test_cli_refuses_more_workers_than_cpus(tmp_path, ray_session, capsys, monkeypatch):
    from services.cli import main

    monkeypatch.setenv("SPD_CACHE_DIR", str(tmp_path / "cache"))
    out = tmp_path / "big.zarr"
    args = ["decompose", "tms-5-2", "--out", str(out), "--steps", "10", "--workers", "64"]
    assert main(args) == 2
    err = capsys.readouterr().err
    assert "64 workers" in err and "the Ray cluster has 8" in err
    assert not out.exists()
    assert not Path(f"{out}.checkpoints").exists()
