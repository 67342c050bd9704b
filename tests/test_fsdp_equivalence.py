"""fsdp variants train like their references on deterministic objectives, with 2 worker
processes (gloo, no Ray) started once for all of them:

- target sharding (`shard_target`): the target built on the meta device, its blocks sharded too
  and each rank's rows read from the weights (a safetensors file for the Llama), trains exactly
  like 2 fsdp workers that each hold the whole target, while holding half of its bytes and never
  reading more than its own rows. The targets exercise a masked forward that resumes mid-model
  (`ResidualMLP.resume_from`, a registered FSDP forward method) and a Llama decoder whose head is
  tied to its embedding (one unit);
- tied components (the TMS presets): tied factors that are shards of their own train exactly
  like one process where they share storage, and the tie holds on every rank after every step
  (`spd_core.train.parallel.tied_shards`).
"""

from __future__ import annotations

from dataclasses import replace
from pathlib import Path

import pytest
import torch
import torch.distributed as dist
import torch.multiprocessing as mp
from transformers import LlamaConfig, LlamaForCausalLM

from spd_core.config import Config, config_from_dict
from spd_core.targets.resid_mlp import ResidualMLP
from spd_core.targets.tms import TMSModel
from spd_core.targets.weights import (
    SafetensorsWeights,
    StateDictWeights,
    TargetWeights,
    parameters_on_meta,
)
from spd_core.task import DecompositionTask
from spd_core.train.loop import LogRecord, TrainingState, new_generators, run_steps
from spd_core.train.parallel.memory import target_bytes
from spd_core.train.parallel.sharding import full_trainable_state, local_part, shard_components
from spd_core.train.parallel.target_loading import build_sharded_model
from spd_core.train.parallel.tied_shards import TiedShardsAdamW
from spd_core.train.setup import build_component_model
from spd_core.train.step import faithfulness_warmup, make_optimizer

LOSSES = [
    {"classname": "CIMaskedReconLoss", "coeff": 1.0},
    {"classname": "CIMaskedReconLayerwiseLoss", "coeff": 1.0},
    {"classname": "FaithfulnessLoss", "coeff": 10.0},
    {"classname": "ImportanceMinimalityLoss", "coeff": 3e-3, "pnorm": 1.0},
]


def resid_mlp() -> ResidualMLP:
    torch.manual_seed(0)
    target = ResidualMLP(n_features=10, d_embed=8, d_mlp=12, n_layers=2)
    for p in target.parameters():  # W_U = W_Eᵀ is not contiguous: sharding must cope
        p.data.copy_(torch.randn(p.shape) * 0.3)
    return target


def llama() -> LlamaForCausalLM:
    torch.manual_seed(0)
    return LlamaForCausalLM(llama_config()).eval()


def llama_config() -> LlamaConfig:
    return LlamaConfig(
        vocab_size=32,
        hidden_size=8,
        intermediate_size=16,
        num_hidden_layers=2,
        num_attention_heads=2,
        num_key_value_heads=2,
        max_position_embeddings=16,
        tie_word_embeddings=True,
    )


class CountedReads:
    """A weight source that counts the values each read returns."""

    def __init__(self, inner: TargetWeights):
        self.inner = inner
        self.values = 0

    def names(self) -> set[str]:
        return self.inner.names()

    def read(self, name: str, start: int, stop: int) -> torch.Tensor:
        rows = self.inner.read(name, start, stop)
        self.values += rows.numel()
        return rows

    def release(self) -> None:
        self.inner.release()


def _on_meta(
    name: str, task: DecompositionTask, folder: Path
) -> tuple[DecompositionTask, CountedReads]:
    """`task` with its target rebuilt on the meta device, its weights read from `folder`'s
    safetensors file (the Llama, saved there by `two_workers`) or from its state dict."""
    weights: TargetWeights
    if name == "llama":
        with parameters_on_meta():
            target = LlamaForCausalLM(llama_config()).eval()
        target.tie_weights()
        weights = SafetensorsWeights([folder / "model.safetensors"])
    else:
        with parameters_on_meta():
            target = ResidualMLP(n_features=10, d_embed=8, d_mlp=12, n_layers=2)
        weights = StateDictWeights(task.target.state_dict())
    reads = CountedReads(weights)
    return replace(task, target=target, target_weights=reads), reads


def _held_bytes(model: torch.nn.Module) -> int:
    """Bytes of the storages behind the target's tensors and the components' weight copies."""
    tensors = [*model.target.parameters(), *model.target.buffers()]
    tensors += [p for p in model.components.parameters() if not p.requires_grad]
    tensors += [b for b in model.components.buffers() if b is not None]
    storages = {local_part(t).untyped_storage().data_ptr(): local_part(t) for t in tensors}
    return sum(t.untyped_storage().nbytes() for t in storages.values())


def _case(name: str) -> tuple[Config, DecompositionTask]:
    """A deterministic objective (no random draw) over two blocks of each target."""
    common = {"seed": 0, "loss_metric_configs": LOSSES, "steps": 4, "batch_size": 8}
    common |= {"train_log_freq": 2, "autocast_bf16": False, "ci_fn_type": "mlp"}
    common |= {"faithfulness_warmup_steps": 3, "faithfulness_warmup_lr": 0.01}
    if name == "resid":
        config = {"module_info": [{"module_pattern": "layers.*.mlp_*", "C": 6}], **common}
        batch = lambda b, g: torch.relu(torch.randn(b, 10, generator=g))  # noqa: E731
        return config_from_dict(config), DecompositionTask(resid_mlp(), batch, {})
    config = {
        "module_info": [{"module_pattern": "model.layers.*.mlp.down_proj", "C": 8}],
        "pretrained_model_output_attr": "logits",
        "output_loss_type": "kl",
        **common,
    }
    batch = lambda b, g: torch.randint(0, 32, (b, 6), generator=g)  # noqa: E731
    return config_from_dict(config), DecompositionTask(llama(), batch, {}, causal_lm=True)


def _train(name: str, sharded: bool, rank: int, world: int, folder: Path) -> dict:
    """As `run_worker` does: a sharded target is read on the meta device's shapes and warmed up
    sharded; a whole one is warmed up whole and then its components are sharded."""
    config, task = _case(name)
    reads = None
    if sharded:
        task, reads = _on_meta(name, task, folder)
        model = build_sharded_model(config, task, torch.device("cpu"))
        faithfulness_warmup(model, config)
    else:
        model = build_component_model(config, task)
        faithfulness_warmup(model, config)
        shard_components(model)
    data, masks = new_generators(config, torch.device("cpu"), rank, world)
    state = TrainingState(model, make_optimizer(model, 1e-2), data, masks)
    losses: list[float] = []  # the total at each logged step, averaged over the ranks

    def log(record: LogRecord) -> None:
        losses.append(record.terms["total"])

    run_steps(state, config, task, rank=rank, world_size=world, on_log=log)
    return {
        "params": full_trainable_state(model),
        "losses": losses,
        "target_bytes": target_bytes(model),
        "values_read": None if reads is None else reads.values,
        "held_bytes": _held_bytes(model),
    }


def _tied_config() -> Config:
    """Deterministic: no random mask draw differs between one process and two."""
    losses = [
        {"classname": "CIMaskedReconLoss", "coeff": 1.0},
        {"classname": "FaithfulnessLoss", "coeff": 1.0},
        {"classname": "ImportanceMinimalityLoss", "coeff": 3e-3, "pnorm": 1.0},
    ]
    return config_from_dict(
        {
            "seed": 0,
            "module_info": [{"module_pattern": "linear*", "C": 5}],  # C odd: uneven shards
            "tied_components": [("linear1", "linear2")],
            "ci_fn_type": "mlp",
            "loss_metric_configs": losses,
            "steps": 6,
            "batch_size": 16,
            "train_log_freq": 3,
            "autocast_bf16": False,
        }
    )


def _tms_task() -> DecompositionTask:
    torch.manual_seed(0)
    target = TMSModel(n_features=6, n_hidden=3)
    target.materialise_tied_()

    def batch(b: int, g: torch.Generator | None) -> torch.Tensor:  # sparse features in [0, 1)
        return torch.rand(b, 6, generator=g) * (torch.rand(b, 6, generator=g) < 0.3)

    return DecompositionTask(target, batch, {})


def _train_tied(rank: int, world: int) -> dict:
    config, task = _tied_config(), _tms_task()
    model = build_component_model(config, task)
    if world > 1:
        shard_components(model)
    optimizer = make_optimizer(model, 0.05)
    state = TrainingState(
        model, optimizer, *new_generators(config, torch.device("cpu"), rank, world)
    )
    components = model.components_by_name()
    src, tgt = components["linear1"], components["linear2"]
    tie_held: list[bool] = []

    def check_tie(_: TrainingState) -> None:
        tie_held.append(
            torch.equal(local_part(tgt.U), local_part(src.V))
            and torch.equal(local_part(tgt.V), local_part(src.U))
        )

    run_steps(state, config, task, rank=rank, world_size=world, after_step=check_tie)
    return {
        "params": full_trainable_state(model),
        "tie_held": tie_held,
        "tied_optimizer": isinstance(optimizer, TiedShardsAdamW),
    }


def _worker(rank: int, world: int, init_file: str, out: str):
    torch.set_num_threads(1)
    dist.init_process_group("gloo", init_method=f"file://{init_file}", rank=rank, world_size=world)
    try:
        results = {
            f"{name}/{sharded}": _train(name, sharded, rank, world, Path(out))
            for name in ("resid", "llama")
            for sharded in (False, True)
        }
        results["tied"] = _train_tied(rank, world)
        torch.save(results, Path(out) / f"rank{rank}.pt")
    finally:
        dist.destroy_process_group()


@pytest.fixture(scope="module")
def two_workers(tmp_path_factory) -> list[dict]:
    tmp = tmp_path_factory.mktemp("fsdp_equivalence")
    llama().save_pretrained(tmp, safe_serialization=True)  # the weights a sharded Llama reads
    mp.spawn(_worker, args=(2, str(tmp / "init"), str(tmp)), nprocs=2, join=True)
    return [torch.load(tmp / f"rank{r}.pt", weights_only=False) for r in (0, 1)]


@pytest.mark.parametrize("name", ["resid", "llama"])
def test_sharded_target_trains_like_a_whole_one(two_workers, name):
    for rank in two_workers:
        whole, sharded = rank[f"{name}/False"], rank[f"{name}/True"]
        assert whole["losses"] == pytest.approx(sharded["losses"], rel=1e-5)
        assert whole["params"].keys() == sharded["params"].keys()
        for key, value in whole["params"].items():
            torch.testing.assert_close(sharded["params"][key], value, rtol=1e-5, atol=1e-6)
    assert two_workers[0]["resid/True"]["params"]  # the comparison covered something


def test_sharded_target_holds_half_the_bytes(two_workers):
    # ResidualMLP 10→8→12, 2 layers, float32: W_E (10, 8) and W_U (8, 10), per layer mlp_in
    # (12, 8) and mlp_out (8, 12), and the components' copies of the four MLP weights:
    # 80 + 80 + 2·192 + 384 = 928 values. Every dim 0 is even, so each rank holds 464.
    for rank in two_workers:
        assert rank["resid/False"]["target_bytes"] == 928 * 4
        assert rank["resid/True"]["target_bytes"] == 464 * 4
        whole, sharded = rank["llama/False"]["target_bytes"], rank["llama/True"]["target_bytes"]
        assert 0.45 < sharded / whole < 0.6, (sharded, whole)  # rotary buffers stay whole


def test_no_rank_reads_or_holds_more_than_its_rows(two_workers):
    # ResidualMLP (as above): 928 values of target weights and component copies, 464 a rank's.
    # The Llama: the embedding (32, 8) (its tied head is not read again); per layer q, k, v, o
    # (8, 8), gate and up (16, 8), down (8, 16) and two norms (8): 656 values; the final norm
    # 8; the components' copies of both down_proj (8, 16): 256. 1832 values, every dim 0 even.
    for rank in two_workers:
        assert rank["resid/True"]["values_read"] == 464
        assert rank["llama/True"]["values_read"] == 916
        # the storages behind the target's tensors hold those rows and nothing more (the
        # Llama's rotary-frequency buffers, 2 + 2 float32 values, are whole on every rank)
        assert rank["resid/True"]["held_bytes"] == 464 * 4
        assert rank["resid/False"]["held_bytes"] == 928 * 4
        assert rank["llama/True"]["held_bytes"] == (916 + 4) * 4
        assert rank["llama/False"]["held_bytes"] == (1832 + 4) * 4


@pytest.fixture(scope="module")
def one_process_tied() -> dict:
    return _train_tied(rank=0, world=1)


def test_fsdp_tied_components_train_like_one_process(two_workers, one_process_tied):
    one, ranks = one_process_tied, [r["tied"] for r in two_workers]
    assert not one["tied_optimizer"] and all(r["tied_optimizer"] for r in ranks)
    for r in ranks:
        assert r["params"].keys() == one["params"].keys()
        for key, value in one["params"].items():
            torch.testing.assert_close(r["params"][key], value, rtol=1e-5, atol=1e-6, msg=key)


def test_fsdp_keeps_the_tie_after_every_step(two_workers, one_process_tied):
    one, ranks = one_process_tied, [r["tied"] for r in two_workers]
    assert one["tie_held"] == [True] * 6  # shared storage: trivially
    for r in ranks:
        assert r["tie_held"] == [True] * 6
        params = r["params"]
        torch.testing.assert_close(
            params["components.linear2.U"], params["components.linear1.V"], rtol=0, atol=0
        )
