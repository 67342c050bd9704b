"""`spd harvest` as a Ray job on a real local Ray: 1 and 2 workers store identical harvests, equal
to a brute-force computation; a stopped harvest resumes to the same result; bad input is refused
with a clear message before anything is written."""

from __future__ import annotations

import shutil
from pathlib import Path

import numpy as np
import pytest
import zarr

from services.cli import main
from services.harvest.checkpoints import shard_file
from services.harvest.job import plan_harvest, run_harvest
from spd_core.harvest import HarvestReader
from spd_core.harvest.run import harvest_shard
from spd_core.harvest.schema import MODULES_GROUP
from spd_core.store import FactorStore, verify_store
from tests.harvest_reference import assert_same_harvest, brute_force

pytestmark = pytest.mark.ray
OPTIONS = ["--inputs", "200", "--shard-size", "64", "--batch-size", "16", "--top-k", "5"]
SETTINGS = {"shard_size": 64, "batch_size": 16, "top_k": 5}


def _copy(store: Path, to: Path) -> Path:
    shutil.copytree(store, to)
    return to


def stored_arrays(path: Path) -> dict[str, dict[str, np.ndarray]]:
    reader = HarvestReader.open(FactorStore.open(path))
    group = zarr.open_group(path / "harvest" / MODULES_GROUP, mode="r")
    return {m: {k: a[...] for k, a in group[m].arrays()} for m in reader.modules}


def test_one_and_two_workers_store_identical_harvests_equal_to_brute_force(
    ray_session, harvest_toy_store, tmp_path, capsys
):
    one = _copy(harvest_toy_store, tmp_path / "one.zarr")
    two = _copy(harvest_toy_store, tmp_path / "two.zarr")
    assert main(["harvest", str(one), *OPTIONS, "--workers", "1"]) == 0
    assert main(["harvest", str(two), *OPTIONS, "--workers", "2"]) == 0
    out, err = capsys.readouterr()
    assert "harvested 200 inputs" in out and "2 worker(s)" in out
    assert "harvest: shard 4/4" in err and "inputs/s" in err and "ETA" in err
    a, b = stored_arrays(one), stored_arrays(two)
    assert_same_harvest(a, b, exact_floats=True)  # bit for bit
    plan = plan_harvest(harvest_toy_store, inputs=200, settings=SETTINGS)
    expected = brute_force(plan.decomposition, plan.inputs.inputs, plan.settings, None, False)
    assert_same_harvest(a, expected)
    assert verify_store(two).ok and verify_store(two).harvest == "complete"
    assert not Path(f"{two}.harvest-checkpoints").exists()  # removed once stored


def test_a_stopped_harvest_resumes_to_the_same_result(ray_session, harvest_toy_store, tmp_path):
    whole = _copy(harvest_toy_store, tmp_path / "whole.zarr")
    run_harvest(plan_harvest(whole, inputs=200, settings=SETTINGS), workers=2)
    stopped = _copy(harvest_toy_store, tmp_path / "stopped.zarr")
    plan = plan_harvest(stopped, inputs=200, settings=SETTINGS)
    plan.checkpoints.prepare()  # as a harvest stopped after its first two shards leaves it
    for shard in (0, 1):
        first, x = plan.inputs.shard(shard, plan.settings)
        done = harvest_shard(plan.decomposition.model, x, first, plan.settings, False)
        done.save(shard_file(plan.checkpoints.folder, shard))
    with pytest.raises(ValueError, match="continue it with --resume"):
        plan_harvest(stopped, inputs=200, settings=SETTINGS)
    reports: list[str] = []
    resumed = plan_harvest(stopped, inputs=200, settings=SETTINGS, resume=True)
    run_harvest(resumed, workers=2, report=reports.append)
    assert reports[0] == "harvest: resuming, 2 of 4 shards done"
    assert_same_harvest(stored_arrays(stopped), stored_arrays(whole), exact_floats=True)


def _files(path: Path) -> dict[str, int]:
    return {str(p.relative_to(path)): p.stat().st_size for p in path.rglob("*") if p.is_file()}


@pytest.mark.parametrize(
    "case, message",
    [
        ("incomplete", "is incomplete: the run that wrote it did not finish"),
        ("model gone", "cannot rebuild its target"),
        ("other harvest", "belong to a different harvest (it differs in settings"),
        ("nothing to resume", "--resume: no harvest checkpoints at"),
        ("tokens of a toy", "--tokens is for decompositions of models over token sequences"),
    ],
)
def test_bad_input_is_refused_with_a_clear_message_and_nothing_written(
    harvest_toy_store, tmp_path, capsys, case, message
):
    path = _copy(harvest_toy_store, tmp_path / "tms.zarr")
    args = ["harvest", str(path), *OPTIONS]
    if case == "incomplete":
        zarr.open_group(path, mode="r+").attrs["complete"] = False
    elif case == "model gone":  # a Hugging Face store whose model folder was deleted
        root = zarr.open_group(path, mode="r+")
        gone = str(tmp_path / "deleted-model")
        root.attrs["target_spec"] = {"kind": "hf", "model": gone, "source": gone}
    elif case == "other harvest":
        plan_harvest(path, inputs=200, settings={**SETTINGS, "top_k": 7}).checkpoints.prepare()
        args.append("--resume")
    elif case == "nothing to resume":
        args.append("--resume")
    else:
        args += ["--tokens", "100"]
        args.remove("--inputs"), args.remove("200")
    before = _files(tmp_path)
    assert main(args) == 2
    err = capsys.readouterr().err
    assert err.startswith("spd harvest: error: ") and message in err, err
    assert _files(tmp_path) == before
