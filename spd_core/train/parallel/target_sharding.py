"""Target sharding: the frozen target's blocks as FSDP2 units over the ranks.

Each decoder layer (or toy layer), each embedding and the head is one `fully_shard` unit, and the
target itself one more around them for what is left (a final norm, a toy's `W_E`/`W_U`). A rank
then holds about 1/N of every block's weights and gathers a block only while it runs: in the clean
pass, in every masked pass, and again in the backward of a masked pass. Blocks that share a
parameter (a head tied to the embedding) are one unit. The components' own copies of the
decomposed weights (`Components.weight`, read by the faithfulness loss and the delta component)
are sharded with their factors, so no rank keeps a whole copy of any target weight.
"""

from __future__ import annotations

from torch import nn
from torch.distributed.fsdp import fully_shard, register_fsdp_forward_method

from spd_core.config import ConfigError
from spd_core.model.component_model import ComponentModel

# Target methods that run blocks (or read the target's own weights) outside `forward`.
_TARGET_METHODS = ("resume_from",)


def target_blocks(target: nn.Module) -> list[list[nn.Module]]:
    """The units a target is sharded into, in module order, each a list of modules sharded
    together: every child of a ModuleList (decoder layers, toy layers) and every Embedding or
    Linear outside one (embeddings, head, a toy's linear layers). Modules that share a
    parameter are merged into one unit. The target's remaining parameters are not listed: they
    form the unit around these (`has_own_parameters`)."""
    blocks: list[nn.Module] = []
    covered: set[int] = set()
    for module in target.modules():  # pre-order: a ModuleList comes before its children
        if module is target or id(module) in covered:
            continue
        if isinstance(module, nn.ModuleList):
            blocks.extend(module)
        elif isinstance(module, nn.Embedding | nn.Linear):
            blocks.append(module)
        else:
            continue
        covered.update(id(m) for m in module.modules())
    return _merge_shared(blocks)


def _merge_shared(blocks: list[nn.Module]) -> list[list[nn.Module]]:
    """Group blocks that share a parameter (FSDP2 shards a parameter in one unit only)."""
    units: list[list[nn.Module]] = []
    owner: dict[int, int] = {}  # parameter id -> index of its unit
    for block in blocks:
        params = [id(p) for p in block.parameters()]
        hit = next((owner[p] for p in params if p in owner), None)
        if hit is None:
            units.append([block])
            hit = len(units) - 1
        else:
            units[hit].append(block)
        owner.update(dict.fromkeys(params, hit))
    return [u for u in units if any(next(m.parameters(), None) is not None for m in u)]


def has_own_parameters(target: nn.Module) -> bool:
    """Whether the target holds parameters outside its blocks (one more unit)."""
    in_blocks = {id(p) for unit in target_blocks(target) for m in unit for p in m.parameters()}
    return any(id(p) not in in_blocks for p in target.parameters())


def count_target_blocks(target: nn.Module) -> int:
    """How many FSDP units `shard_target` makes of this target."""
    return len(target_blocks(target)) + int(has_own_parameters(target))


def check_shard_target_strategy(strategy: str | None) -> None:
    """Refuse, before any work, target sharding outside a Ray Train fsdp job (`strategy` None:
    a run in one process)."""
    if strategy is None:
        raise ConfigError(
            "shard_target (--shard-target) splits the target over Ray Train workers, and a run "
            "in one process (--no-ray) has no workers to split it over; run it as a Ray job "
            "with --workers N --strategy fsdp, or drop --shard-target"
        )
    if strategy != "fsdp":
        raise ConfigError(
            f"shard_target (--shard-target) works with --strategy fsdp, not '{strategy}': it "
            "shards the target next to the components, which ddp keeps whole on every worker; "
            "use --strategy fsdp, or drop --shard-target"
        )


def check_target_sharding(target: nn.Module, strategy: str, workers: int) -> None:
    """Refuse, before any work, a strategy other than fsdp, and more workers than the target
    has blocks: a rank holds its shard of every block plus one whole block while it runs, so
    past that many workers the gathered block outweighs the shard and more workers no longer
    lower the memory per worker."""
    check_shard_target_strategy(strategy)
    blocks = count_target_blocks(target)
    if workers > blocks:
        raise ConfigError(
            f"shard_target (--shard-target): the target has {blocks} blocks (layers, "
            f"embeddings, head) and {workers} workers would each hold less than one, while "
            f"every worker gathers a whole block to run it; use at most {blocks} workers, or "
            "drop --shard-target"
        )


def shard_target(model: ComponentModel) -> None:
    """Make the frozen target's blocks FSDP2 units (resharded after each forward) and move the
    components' copies of the target weights into their FSDP units. Call before
    `shard_components`."""
    for comp in model.components_by_name().values():
        weight = comp.weight
        del comp._buffers["weight"]
        comp.weight = nn.Parameter(weight, requires_grad=False)
    target = model.target
    for p in target.parameters():  # FSDP2 shards contiguous parameters only (W_U = W_Eᵀ is not)
        p.data = p.data.contiguous()
    for unit in target_blocks(target):
        fully_shard(unit if len(unit) > 1 else unit[0], reshard_after_forward=True)
    fully_shard(target, reshard_after_forward=True)
    for method in _TARGET_METHODS:
        if hasattr(target, method):
            register_fsdp_forward_method(target, method)
