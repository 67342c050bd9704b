"""A writer killed (SIGKILL) just before or just after any one of its writes leaves a store that
every reader refuses as incomplete; only after its last write (the `complete` flag) does the
store open, and then it verifies."""

from __future__ import annotations

import os
import signal
from pathlib import Path

import numpy as np
import pytest
import zarr

from spd_core.store import FactorStore, ModuleLayout, StoreError, StoreWriter, verify_store

MODULES = {
    "layers.0.mlp_in": ModuleLayout(kind="linear", C=6, d_in=4, d_out=3),
    "layers.0.mlp_out": ModuleLayout(kind="linear", C=6, d_in=3, d_out=4),
}


def _writer_life(path: Path) -> None:
    """What a run does to its store, in order: create it, write every factor in chunks (as
    parallel workers do), then (rank 0) CI functions, target, curves, metrics, completion."""
    writer = StoreWriter.create(
        path, modules=MODULES, config={"seed": 0}, target_spec={}, chunk_c=3
    )
    rng = np.random.default_rng(0)
    for name, layout in MODULES.items():
        for factor in ("U", "V"):
            rows = rng.standard_normal(layout.factor_shape(factor)).astype(np.float32)
            for start in (0, 3):
                writer.write_factor_rows(name, factor, start, rows[start : start + 3])
        writer.write_ci_fn(name, {"w": rng.standard_normal((2, 2))}, "mlp", [2])
    writer.write_target({"weight": rng.standard_normal((3, 4))})
    writer.append_curves(1, {"loss": 0.5})
    writer.update_metrics({"loss": 0.5})
    writer.mark_complete()


def _run(path: Path, kill_at: int | None, after: bool) -> int:
    """Run the writer's life in a forked child that kills itself around its `kill_at`-th write
    (a rename of a written file over its final name: every Zarr and manifest write ends in one);
    returns how many writes it made (all of them when `kill_at` is None)."""
    read, write = os.pipe()
    pid = os.fork()
    if pid == 0:  # the child: never returns into pytest
        try:
            os.close(read)
            count = 0
            real_replace = os.replace

            def replace(src, dst, **kwargs) -> None:
                nonlocal count
                count += 1
                if count == kill_at and not after:
                    os.kill(os.getpid(), signal.SIGKILL)
                real_replace(src, dst, **kwargs)
                if count == kill_at and after:
                    os.kill(os.getpid(), signal.SIGKILL)

            os.replace = replace
            _writer_life(path)
            os.write(write, str(count).encode())
        finally:
            os._exit(0)
    os.close(write)
    _, status = os.waitpid(pid, 0)
    with os.fdopen(read) as pipe:
        written = pipe.read()
    if kill_at is None:
        assert os.WIFEXITED(status) and written, "the writer failed without being killed"
        return int(written)
    assert os.WIFSIGNALED(status) and os.WTERMSIG(status) == signal.SIGKILL
    return kill_at


@pytest.fixture(scope="module")
def writes(tmp_path_factory) -> int:
    """How many writes a whole writer's life makes (and that it ends in a good store)."""
    path = tmp_path_factory.mktemp("crash") / "whole.zarr"
    n = _run(path, None, after=False)
    assert FactorStore.open(path).complete and verify_store(path).verified
    return n


def test_the_complete_flag_is_the_last_write(writes: int, tmp_path: Path):
    path = tmp_path / "s.zarr"
    _run(path, writes, after=False)  # killed just before the last write
    assert zarr.open_group(path, mode="r").attrs["complete"] is False
    assert (path / "integrity" / "zarr.json").exists()  # the manifest was already durable
    _run(tmp_path / "t.zarr", writes, after=True)  # killed just after it
    assert verify_store(tmp_path / "t.zarr").verified


@pytest.mark.parametrize("after", [False, True], ids=["before", "after"])
def test_a_writer_killed_at_any_write_leaves_a_store_readers_refuse(
    writes: int, tmp_path: Path, after: bool
):
    outcomes = []
    for k in range(1, writes + (0 if after else 1)):
        path = tmp_path / f"killed-{k}.zarr"
        _run(path, k, after)
        with pytest.raises(StoreError, match=r"incomplete|not a factor store|no factor store"):
            FactorStore.open(path)
        if (path / "zarr.json").exists():
            assert zarr.open_group(path, mode="r").attrs["complete"] is False, k
            assert [p.kind for p in verify_store(path).problems] == ["incomplete"], k
        outcomes.append(k)
    assert len(outcomes) == writes - (1 if after else 0)
