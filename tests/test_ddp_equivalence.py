"""DDP with 2 worker processes (gloo, no Ray) trains exactly like one process on a deterministic
objective, per-step PGD with a shared source and persistent PGD included: shared sources start
as rank 0's and ascend the gradient averaged over the ranks (`RankGroup`)."""

from __future__ import annotations

import json
from pathlib import Path

import torch
import torch.distributed as dist
import torch.multiprocessing as mp

from spd_core.config import Config, config_from_dict
from spd_core.task import DecompositionTask
from spd_core.train.loop import TrainingState, new_generators, run_steps
from spd_core.train.parallel.gradients import average_gradients
from spd_core.train.setup import build_component_model
from spd_core.train.step import make_optimizer
from tests.conftest import TwoLayer

ADAM = {"type": "adam", "lr_schedule": {"start_val": 0.05}}
SIGN = {"type": "sign", "lr_schedule": {"start_val": 0.1}}


def _config() -> Config:
    """No random draw differs between one process and two: CI-masked and importance terms, PGD
    from a random shared source (rank 0's mask stream equals one process's at seed 0, and the
    ranks take rank 0's), persistent sources from their rank-independent stream."""
    losses = [
        {"classname": "CIMaskedReconLoss", "coeff": 1.0},
        {"classname": "ImportanceMinimalityLoss", "coeff": 3e-3, "pnorm": 1.0},
        {
            "classname": "PGDReconLoss",
            "coeff": 1.0,
            "init": "random",
            "step_size": 0.3,
            "n_steps": 2,
            "mask_scope": "shared_across_batch",
        },
        {
            "classname": "PersistentPGDReconLoss",
            "coeff": 1.0,
            "optimizer": SIGN,
            "scope": {"type": "single_source"},
        },
        {
            "classname": "PersistentPGDReconLayerwiseLoss",
            "coeff": 1.0,
            "optimizer": ADAM,
            "scope": {"type": "per_batch_per_position"},
        },
    ]
    return config_from_dict(
        {
            "seed": 0,
            "module_info": [{"module_pattern": "fc*", "C": 3}],
            "ci_fn_type": "mlp",
            "loss_metric_configs": losses,
            "steps": 6,
            "batch_size": 32,
            "train_log_freq": 3,
            "autocast_bf16": False,
        }
    )


def _task() -> DecompositionTask:
    return DecompositionTask(TwoLayer(), lambda b, g: torch.randn(b, 3, generator=g), {})


def _train(config: Config, rank: int, world: int) -> dict:
    task = _task()
    model = build_component_model(config, task)
    data, masks = new_generators(config, torch.device("cpu"), rank, world)
    state = TrainingState(model, make_optimizer(model, 1e-3), data, masks)
    params = model.component_parameters() + model.ci_parameters()
    run_steps(
        state,
        config,
        task,
        rank=rank,
        world_size=world,
        sync_gradients=(lambda: average_gradients(params, world)) if world > 1 else None,
    )
    return {
        "params": {k: v.detach().clone() for k, v in model.named_parameters() if v.requires_grad},
        "adversaries": {
            name: {m: v.detach().clone() for m, v in adv.values.items()}
            for name, adv in state.adversaries.items()
        },
    }


def _worker(rank: int, world: int, init_file: str, config_json: str, out: str):
    torch.set_num_threads(1)
    dist.init_process_group("gloo", init_method=f"file://{init_file}", rank=rank, world_size=world)
    try:
        config = config_from_dict(json.loads(config_json))
        torch.save(_train(config, rank, world), Path(out) / f"rank{rank}.pt")
    finally:
        dist.destroy_process_group()


def test_two_ddp_workers_train_exactly_like_one_process(tmp_path):
    config = _config()
    one = _train(config, rank=0, world=1)
    mp.spawn(
        _worker,
        args=(
            2,
            str(tmp_path / "init"),
            json.dumps(config.model_dump(mode="json")),
            str(tmp_path),
        ),
        nprocs=2,
        join=True,
    )
    ranks = [torch.load(tmp_path / f"rank{r}.pt") for r in (0, 1)]
    for name, value in one["params"].items():
        for r in ranks:
            torch.testing.assert_close(r["params"][name], value, rtol=1e-5, atol=1e-6, msg=name)
    shared = one["adversaries"]["PersistentPGDReconLoss"]
    for module, value in shared.items():  # a shared source: the same on every rank
        for r in ranks:
            got = r["adversaries"]["PersistentPGDReconLoss"][module]
            torch.testing.assert_close(got, value, rtol=1e-5, atol=1e-6)
    per_position = one["adversaries"]["PersistentPGDReconLayerwiseLoss"]
    for module, value in per_position.items():  # each rank holds its rows of the global batch
        halves = [r["adversaries"]["PersistentPGDReconLayerwiseLoss"][module] for r in ranks]
        torch.testing.assert_close(torch.cat(halves), value, rtol=1e-5, atol=1e-6)
