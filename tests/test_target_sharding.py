"""Target sharding (`shard_target`): which blocks a target is split into, and what is refused
before any work. That a sharded target trains like a whole one is `tests/test_fsdp_equivalence.py`
(2 processes) and `tests/test_train_ray.py` (a Ray Train job with a killed worker)."""

from __future__ import annotations

import re
from pathlib import Path

import pytest
from torch import nn

from spd_core.config import ConfigError
from spd_core.targets.tms import TMSModel
from spd_core.train.parallel.target_sharding import (
    check_target_sharding,
    count_target_blocks,
    target_blocks,
)
from tests.test_fsdp_equivalence import llama, resid_mlp


def test_target_blocks_of_each_target_kind():
    def names(target: nn.Module) -> list[list[str]]:
        by_id = {id(m): n for n, m in target.named_modules()}
        return [[by_id[id(m)] for m in unit] for unit in target_blocks(target)]

    assert names(resid_mlp()) == [["layers.0"], ["layers.1"]]
    assert count_target_blocks(resid_mlp()) == 3  # + W_E and W_U around them
    tms = TMSModel(n_features=5, n_hidden=2, n_hidden_layers=1)
    assert names(tms) == [["linear1"], ["hidden_layers.0"], ["linear2"]]
    assert count_target_blocks(tms) == 3
    # the head shares the embedding's weight: one unit; the final norm is left to the target's
    assert names(llama()) == [
        ["model.embed_tokens", "lm_head"],
        ["model.layers.0"],
        ["model.layers.1"],
    ]
    assert count_target_blocks(llama()) == 4


@pytest.mark.parametrize(
    ("strategy", "workers", "message"),
    [
        ("ddp", 2, "works with --strategy fsdp, not 'ddp'"),
        ("fsdp", 4, "the target has 3 blocks (layers, embeddings, head) and 4 workers"),
    ],
)
def test_target_sharding_refuses(strategy, workers, message):
    with pytest.raises(ConfigError, match=message.replace("(", r"\(").replace(")", r"\)")):
        check_target_sharding(resid_mlp(), strategy, workers)


@pytest.mark.parametrize(
    ("flags", "message"),
    [
        (["--strategy", "ddp", "--workers", "2"], "works with --strategy fsdp, not 'ddp'"),
        (["--no-ray"], "a run in one process (--no-ray) has no workers to split it over"),
        # tms-5-2 has two blocks, linear1 and linear2: refused after the target is built (it
        # counts them), before Ray starts or anything is written
        (["--strategy", "fsdp", "--workers", "4"], "the target has 2 blocks .* 4 workers"),
    ],
)
def test_cli_refuses_shard_target_before_any_work(tmp_path, monkeypatch, capsys, flags, message):
    from services.cli import main

    monkeypatch.setenv("SPD_CACHE_DIR", str(tmp_path / "cache"))
    out = tmp_path / "x.zarr"
    args = ["decompose", "tms-5-2", "--out", str(out), "--steps", "10", "--shard-target", *flags]
    assert main(args) == 2
    err = capsys.readouterr().err
    assert err.startswith("spd decompose: error: shard_target (--shard-target)")
    assert re.search(message.replace("(--no-ray)", r"\(--no-ray\)"), err), err
    assert not out.exists() and not Path(f"{out}.checkpoints").exists()
