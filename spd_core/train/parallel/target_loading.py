"""A sharded target filled from its files: each rank reads only its own rows.

The task's target is built with its parameters on the meta device (`spd_core.targets.weights`),
its blocks and the components become FSDP2 units (`shard_target`, `shard_components`), and only
then does each rank read, from the task's `target_weights`, its rows of every target weight and of
every component's copy of a decomposed weight (the rows FSDP2 gives it), and every component's
copy of a bias (small, whole). No rank ever holds more of the target than its shards plus the rows
of one weight being read; the component factors and CI functions are initialised exactly as in an
unsharded run (from the config's seed, before any weight is read).
"""

from __future__ import annotations

from collections.abc import Callable

import torch
from torch import Tensor, nn
from torch.distributed.tensor import DTensor

from spd_core.config import Config
from spd_core.model.component_model import ComponentModel
from spd_core.targets.weights import TargetWeights
from spd_core.task import DecompositionTask
from spd_core.train.parallel.sharding import shard_components, shard_rows
from spd_core.train.parallel.target_sharding import shard_target
from spd_core.train.setup import build_component_model

ReadRows = Callable[[int, int], Tensor]


def build_sharded_model(
    config: Config, task: DecompositionTask, device: torch.device
) -> ComponentModel:
    """The component model with the target and the components sharded over the ranks, each
    rank's shards read from `task.target_weights` (the task's target on the meta device)."""
    if task.target_weights is None:
        raise ValueError(
            "target sharding needs the task's target on the meta device and its target_weights: "
            "build the task with target_on_meta=True"
        )
    model = build_component_model(config, task)
    model._apply(lambda t: t if t.is_meta else t.to(device))
    shard_target(model)
    shard_components(model)
    fill_from_weights(model, task.target_weights, device)
    task.target_weights.release()  # unmap a memory-mapped file: only the shards stay
    return model


@torch.no_grad()
def fill_from_weights(model: ComponentModel, weights: TargetWeights, device: torch.device) -> None:
    """Give every meta tensor of the sharded model its values: a sharded parameter this rank's
    rows, a component's copy of a bias its whole value (the target's buffers are computed when it
    is built). Refuses weights the source lacks, naming them, before reading any."""
    reads = _planned_reads(model)
    missing = sorted({name for name, _ in reads.values()} - weights.names())
    if missing:
        raise ValueError(
            f"the target's weight files lack {missing[:5]}{' …' if len(missing) > 5 else ''}: "
            "target sharding reads each weight under its parameter name; drop --shard-target"
        )
    replaced: dict[int, Tensor] = {}
    for module in model.modules():
        for slot in (module._parameters, module._buffers):
            for key, tensor in slot.items():
                if tensor is None or not tensor.is_meta:
                    continue
                if id(tensor) not in replaced:
                    name, transposed = reads[id(tensor)]
                    read = _reader(weights, name, transposed)
                    replaced[id(tensor)] = _filled(tensor, read, device)
                slot[key] = replaced[id(tensor)]
    left = [n for n, t in [*model.named_parameters(), *model.named_buffers()] if t.is_meta]
    if left:
        raise RuntimeError(f"no weights were read for {left}")


def _planned_reads(model: ComponentModel) -> dict[int, tuple[str, bool]]:
    """For each meta tensor (by id): the source weight it is read from, and whether it is that
    weight transposed (a Conv1D's component copy, stored (d_in, d_out))."""
    target = model.target
    canonical: dict[int, str] = {}
    for name, param in target.named_parameters():  # a tied head: its embedding's name, once
        canonical.setdefault(id(param), name)
    reads = {id_: (name, False) for id_, name in canonical.items()}
    for name, comp in model.components_by_name().items():
        module = target.get_submodule(name)
        reads[id(comp.weight)] = (canonical[id(module.weight)], comp.kind == "conv1d")
        if comp.bias is not None:
            reads[id(comp.bias)] = (canonical[id(module.bias)], False)
    return reads


def _reader(weights: TargetWeights, name: str, transposed: bool) -> ReadRows:
    if not transposed:
        return lambda start, stop: weights.read(name, start, stop)

    def columns(start: int, stop: int) -> Tensor:  # a Conv1D's rows are its weight's columns
        whole = weights.read(name, 0, torch.iinfo(torch.int64).max)
        return whole.T[start:stop]

    return columns


def _filled(tensor: Tensor, read: ReadRows, device: torch.device) -> Tensor:
    """`tensor` (on the meta device) with values: a DTensor its rank's rows, a plain one whole."""
    if not isinstance(tensor, DTensor):
        return read(0, tensor.shape[0]).to(device=device, dtype=tensor.dtype).contiguous()
    mesh = tensor.device_mesh
    start, stop = shard_rows(tensor.shape[0], mesh.size(), mesh.get_local_rank())
    local = read(start, stop).to(device=device, dtype=tensor.dtype).contiguous()
    if local.shape != tensor.to_local().shape:
        raise RuntimeError(
            f"read rows {tuple(local.shape)} of a weight whose shard here is "
            f"{tuple(tensor.to_local().shape)}"
        )
    sharded = DTensor.from_local(
        local, mesh, tensor.placements, run_check=False, shape=tensor.shape, stride=tensor.stride()
    )
    return nn.Parameter(sharded, requires_grad=False)
