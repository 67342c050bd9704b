"""Every job with its data on object storage, against a real S3-protocol server on 127.0.0.1
(moto in server mode, `tests/s3_server.py`): a 2-worker Ray Train run into s3:// killed after its
first checkpoint and resumed equals the run on a local disk; a harvest into s3:// with 2 workers,
stopped and resumed from its shards on the bucket, equals the local harvest; `spd serve` answers
from s3://; a chunk deleted on the server is refused; bad buckets, keys and endpoints are refused
in one line before any work, with nothing written.

The credentials and endpoint are set in this process's environment only after the test session's
Ray has started, so its workers and Train controller reach the server only with what the driver
hands them (`spd_core.store.portable`)."""

from __future__ import annotations

import contextlib
import json
import os
import re
import shutil
import socket
import subprocess
import sys
import time
from collections.abc import Iterator
from pathlib import Path

import numpy as np
import pytest
import torch

from services.cli import main
from services.harvest.checkpoints import shard_file
from services.harvest.job import plan_harvest
from services.train.job import JobOptions, run_job
from spd_core.harvest.run import harvest_shard
from spd_core.loading import load_component_model
from spd_core.queries import importances
from spd_core.store import FactorStore, StoreError, verify_store
from spd_core.store.location import Location
from spd_core.task.toy import toy_task
from spd_core.train.single_process import decompose
from tests.harvest_reference import assert_same_harvest
from tests.s3_server import S3Server
from tests.stored_params import stored_params
from tests.test_harvest_ray import OPTIONS as HARVEST_OPTIONS
from tests.test_harvest_ray import SETTINGS as HARVEST_SETTINGS
from tests.test_harvest_ray import stored_arrays
from tests.test_train_ray import KillOneWorker
from tests.test_train_ray import _config as deterministic_tms

pytestmark = pytest.mark.ray
BUCKET = "spd-runs"
CHECKPOINT_EVERY = 20
CHUNK = "modules/linear1/U/c/1/0"  # worker 1's rows of linear1's U in a 2-worker run


def _free_port() -> int:
    with socket.socket() as s:
        s.bind(("127.0.0.1", 0))
        return s.getsockname()[1]


@pytest.fixture(scope="module")
def s3(ray_session) -> Iterator[S3Server]:
    """The server, a bucket, and this process's AWS_* variables pointing at it (set after the
    session's Ray started: its processes never see them)."""
    server = S3Server()
    server.create_bucket(BUCKET)
    with pytest.MonkeyPatch.context() as env:
        for key, value in server.env().items():
            env.setenv(key, value)
        yield server
    server.stop()


def _url(name: str) -> str:
    return f"s3://{BUCKET}/{name}"


def _upload(local: Path, name: str) -> str:
    """A copy of the local store `local` on the bucket; its URL."""
    url = _url(name)
    fs, path = Location.of(url).filesystem()
    fs.put(str(local), path, recursive=True)
    return url


def _config():
    return deterministic_tms().model_copy(update={"steps": 60, "eval_freq": 60})


@pytest.fixture(scope="module")
def task(tmp_path_factory):
    return toy_task(_config(), torch.device("cpu"), tmp_path_factory.mktemp("cache"))


def _options(**kw) -> JobOptions:
    return JobOptions(
        workers=2, strategy="ddp", checkpoint_every=CHECKPOINT_EVERY, cpus_per_worker=1, **kw
    )


class KillAndWatch(KillOneWorker):
    """KillOneWorker, which waits for Ray's registered checkpoint (read where the run keeps it:
    here on the bucket), and records the objects of the checkpoint folder at the kill."""

    def __init__(self, at_step: int, out: str, s3: S3Server):
        super().__init__(at_step, out)  # type: ignore[arg-type]
        self.s3 = s3
        self.seen: list[str] = []

    def __call__(self, event) -> None:
        before = self.killed
        super().__call__(event)
        if before is None and self.killed is not None:
            self.seen = self.s3.keys(BUCKET, "ddp.zarr.checkpoints/")


def test_a_killed_ddp_run_on_s3_resumes_from_checkpoints_on_the_bucket_and_equals_local(
    s3, task, tmp_path, monkeypatch
):
    monkeypatch.chdir(tmp_path)  # a URL must never become a local folder (`s3:`) here
    local = tmp_path / "ddp.zarr"
    run_job(_config(), task, local, _options())
    url = _url("ddp.zarr")
    killer = KillAndWatch(CHECKPOINT_EVERY + 10, url, s3)
    run_job(_config(), task, url, _options(max_failures=2), progress=killer)
    assert killer.killed is not None
    # the checkpoints were on the bucket, beside the store: Ray's snapshot and a rank's state
    assert "ddp.zarr.checkpoints/checkpoint_manager_snapshot.json" in killer.seen, killer.seen
    assert any(k.endswith("rank-00001.pt") for k in killer.seen), killer.seen
    store = FactorStore.open(url)
    assert store.metrics["restarts"] == 1 and store.metrics["workers"] == 2
    assert store.curves()["step"].tolist() == list(range(10, 61, 10))  # redone, not repeated
    a, b = stored_params(url), stored_params(local)
    assert a.keys() == b.keys()
    largest = max(float(np.abs(a[k] - b[k]).max()) for k in a)
    print(f"largest |s3 - local| over the factors and CI functions: {largest:.3g}")
    assert largest <= 1e-6
    assert f"ddp.zarr/{CHUNK}" in s3.keys(BUCKET, "ddp.zarr/")  # worker 1 wrote its own chunk
    assert s3.keys(BUCKET, "ddp.zarr.checkpoints") == []  # removed once complete
    assert verify_store(url).verified
    assert list(tmp_path.iterdir()) == [local]  # nothing local but the local run's store


def test_a_stopped_no_ray_run_on_s3_resumes_from_checkpoints_on_the_bucket(s3, task, tmp_path):
    """The run in one process keeps its `checkpoint_step_<N>` folders beside the store on the
    bucket too, and resumes from them to the uninterrupted result."""
    config = _config()
    local = tmp_path / "whole.zarr"
    decompose(config, task, out=local)
    url = _url("no-ray.zarr")

    def stop_at_30(event) -> None:  # logged every 10 steps; checkpoints at 20, 40, ...
        if event.step == 30:
            raise KeyboardInterrupt

    with pytest.raises(KeyboardInterrupt):
        decompose(config, task, out=url, checkpoint_every=CHECKPOINT_EVERY, progress=stop_at_30)
    saved = s3.keys(BUCKET, "no-ray.zarr.checkpoints/")
    assert saved == ["no-ray.zarr.checkpoints/checkpoint_step_000000020/rank-00000.pt"], saved
    decompose(config, task, out=url, checkpoint_every=CHECKPOINT_EVERY, resume=True)
    assert FactorStore.open(url).metrics["restarts"] == 1
    a, b = stored_params(url), stored_params(local)
    for key in a:
        np.testing.assert_array_equal(a[key], b[key], err_msg=key)
    assert s3.keys(BUCKET, "no-ray.zarr.checkpoints") == []


def test_a_harvest_on_s3_with_two_workers_resumes_from_its_shards_and_equals_local(
    s3, harvest_toy_store, tmp_path, capsys
):
    local = tmp_path / "local.zarr"
    shutil.copytree(harvest_toy_store, local)
    assert main(["harvest", str(local), *HARVEST_OPTIONS, "--workers", "2"]) == 0
    url = _upload(harvest_toy_store, "harvest.zarr")
    plan = plan_harvest(url, inputs=200, settings=HARVEST_SETTINGS)
    assert str(plan.checkpoints.folder) == f"{url}.harvest-checkpoints"  # beside it, on S3
    plan.checkpoints.prepare()  # as a harvest stopped after its first two shards leaves it
    for shard in (0, 1):
        first, x = plan.inputs.shard(shard, plan.settings)
        done = harvest_shard(plan.decomposition.model, x, first, plan.settings, False)
        done.save(shard_file(plan.checkpoints.folder, shard))
    assert len(s3.keys(BUCKET, "harvest.zarr.harvest-checkpoints/")) == 3  # identity + 2
    capsys.readouterr()
    assert main(["harvest", url, *HARVEST_OPTIONS, "--workers", "2", "--resume"]) == 0
    err = capsys.readouterr().err
    assert "harvest: resuming, 2 of 4 shards done" in err and "shard 4/4" in err
    reader_arrays = _s3_harvest_arrays(url)
    assert_same_harvest(reader_arrays, stored_arrays(local), exact_floats=True)
    assert verify_store(url).harvest == "complete"
    assert s3.keys(BUCKET, "harvest.zarr.harvest-checkpoints") == []  # removed once stored


def _s3_harvest_arrays(url: str) -> dict[str, dict[str, np.ndarray]]:
    import zarr

    from spd_core.harvest import HarvestReader
    from spd_core.harvest.schema import MODULES_GROUP

    store = FactorStore.open(url)
    reader = HarvestReader.open(store)
    group = store.root[f"harvest/{MODULES_GROUP}"]
    assert isinstance(group, zarr.Group)
    return {m: {k: a[...] for k, a in group[m].arrays()} for m in reader.modules}


@pytest.fixture(scope="module")
def served_url(s3, harvest_toy_store) -> str:
    return _upload(harvest_toy_store, "served.zarr")


def _wait_for(address: str, proc: subprocess.Popen, deadline_s: float = 240) -> None:
    from spd_client import Client

    deadline = time.monotonic() + deadline_s
    while True:
        assert proc.poll() is None, proc.stderr.read() if proc.stderr else "spd serve exited"
        try:
            with Client(address, timeout=5) as client:
                client.list_decompositions()
                return
        except Exception:
            assert time.monotonic() < deadline, "spd serve did not answer in time"
            time.sleep(1)


def test_spd_serve_answers_from_s3_with_credentials_given_as_storage_options(
    s3, served_url, harvest_toy_store, tmp_path
):
    """`spd serve s3://…` in its own process and Ray, whose environment has no AWS_* variables:
    the replica opens the store with the --storage-options the command was given."""
    from spd_client import Client

    options = {
        "endpoint_url": s3.endpoint,
        "key": s3.credentials["AWS_ACCESS_KEY_ID"],
        "secret": s3.credentials["AWS_SECRET_ACCESS_KEY"],
        "client_kwargs": {"region_name": "us-east-1"},
    }
    env = {k: v for k, v in os.environ.items() if not k.startswith(("AWS_", "RAY_ADDRESS"))}
    env["AWS_CONFIG_FILE"] = env["AWS_SHARED_CREDENTIALS_FILE"] = str(tmp_path / "none")
    port = _free_port()
    command = [sys.executable, "-m", "services.cli", "serve", f"tms={served_url}"]
    command += ["--port", str(port), "--http-port", str(_free_port())]
    command += ["--storage-options", json.dumps(options)]
    proc = subprocess.Popen(command, env=env, stdout=subprocess.PIPE, stderr=subprocess.PIPE)
    try:
        _wait_for(f"127.0.0.1:{port}", proc)
        x = np.eye(5, dtype=np.float32) * 0.8
        with Client(f"127.0.0.1:{port}") as client:
            assert [d.name for d in client.list_decompositions()] == ["tms"]
            served = client.compute_importances("tms", x)
    finally:
        proc.terminate()
        proc.wait(timeout=60)
    model, _ = load_component_model(harvest_toy_store)
    with torch.no_grad():
        expected = importances(model.eval(), torch.from_numpy(x))
    for module, values in expected.items():
        np.testing.assert_allclose(served[module].values, values.numpy(), atol=1e-6)


def test_a_chunk_deleted_on_the_server_is_refused_as_on_disk(s3, harvest_toy_store, capsys):
    url = _upload(harvest_toy_store, "damaged.zarr")
    chunk = next(k for k in s3.keys(BUCKET, "damaged.zarr/modules/linear1/U/c/"))
    s3.client().delete_object(Bucket=BUCKET, Key=chunk)
    missing = f"missing chunk: s3://{BUCKET}/{chunk}"
    with pytest.raises(StoreError, match=missing):
        FactorStore.open(url)
    assert main(["verify", url]) == 1
    assert missing in capsys.readouterr().out
    for command in (["inspect", url], ["harvest", url, "--inputs", "64"], ["serve", url]):
        assert main(command) == 2, command
        err = capsys.readouterr().err
        assert "is damaged" in err and missing in err, (command, err)


def _closed_port() -> int:
    return _free_port()  # bound, then closed: nothing listens there


BAD_INPUT = {
    "no such bucket": (
        {},
        "s3://no-such-bucket/run.zarr",
        r"the bucket s3://no-such-bucket does not exist at http://127\.0\.0\.1:\d+",
    ),
    "wrong key": (
        {"AWS_ACCESS_KEY_ID": "AKIAWRONGWRONGWRONG1", "AWS_SECRET_ACCESS_KEY": "wrong"},
        f"s3://{BUCKET}/bad.zarr",
        rf"access to s3://{BUCKET} was refused \(PermissionError: The AWS Access Key Id you "
        r"provided does not exist in our records\.\); check the credentials",
    ),
    "unreachable endpoint": (
        {"AWS_ENDPOINT_URL": "http://127.0.0.1:{closed}"},
        f"s3://{BUCKET}/bad.zarr",
        r"cannot reach the object store at http://127\.0\.0\.1:\d+ .*check the endpoint",
    ),
}
COMMANDS = {
    "decompose": ["decompose", "tms-5-2", "--steps", "10", "--workers", "2", "--out", "{url}"],
    "decompose --no-ray": ["decompose", "tms-5-2", "--steps", "10", "--no-ray", "--out", "{url}"],
    "harvest": ["harvest", "{url}", "--workers", "2"],
    "verify": ["verify", "{url}"],
    "inspect": ["inspect", "{url}"],
    "serve": ["serve", "{url}"],
}


@pytest.mark.parametrize("case", BAD_INPUT)
def test_bad_buckets_keys_and_endpoints_are_one_line_before_any_work(
    s3, case, tmp_path, monkeypatch, capsys
):
    variables, url, message = BAD_INPUT[case]
    monkeypatch.chdir(tmp_path)
    monkeypatch.setenv("SPD_CACHE_DIR", str(tmp_path / "cache"))
    for key, value in variables.items():
        monkeypatch.setenv(key, value.format(closed=_closed_port()))
    # for a wrong key, the server refuses any key but its IAM user's (moto answers a signed
    # request for a missing bucket with a signature error, so the other cases go without)
    with s3.checking_keys() if case == "wrong key" else contextlib.nullcontext():
        before = s3.keys(BUCKET)
        for name, template in COMMANDS.items():
            argv = [a.format(url=url) for a in template]
            assert main(argv) == 2, name
            err = capsys.readouterr().err
            lines = err.strip().splitlines()
            assert len(lines) == 1 and "Traceback" not in err, (name, err)
            assert lines[0].startswith(f"spd {argv[0]}: error: {url}: "), (name, err)
            assert re.search(message, lines[0]), (name, lines[0])
        assert s3.keys(BUCKET) == before  # nothing written
    assert list(tmp_path.iterdir()) == []  # no local folder either (nor a toy target trained)


def test_storage_options_must_be_a_json_object(capsys):
    for bad in ("{not json", "[1, 2]"):
        with pytest.raises(SystemExit) as exit_:
            main(["verify", "s3://bucket/x.zarr", "--storage-options", bad])
        assert exit_.value.code == 2
        assert "argument --storage-options" in capsys.readouterr().err
