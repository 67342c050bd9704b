"""An edited toy target on disk: a Zarr v3 group laid out as a factor store's `target/` (one
array per state-dict entry, see docs/store-format.md) with the target's spec in its attributes,
so the code that rebuilds a store's toy target rebuilds it, and plain zarr reads its arrays."""

from __future__ import annotations

from collections.abc import Mapping
from pathlib import Path
from typing import Any

import torch
import zarr
from torch import Tensor, nn

from spd_core.edit.selection import EditError
from spd_core.store.layout import TARGET
from spd_core.store.reader import read_params
from spd_core.store.writer import write_param_group

FORMAT = "spd-toy-target/1"


def write_toy_target(
    folder: Path, target_spec: Mapping[str, Any], state: Mapping[str, Tensor], note: dict
) -> None:
    """`folder` (new) as a Zarr group: attrs `format`, `target_spec` (the store's) and `spd_edit`
    (the note); `target/` the weights, dtypes kept as the store keeps them."""
    root = zarr.open_group(
        str(folder),
        mode="w-",
        zarr_format=3,
        attributes={"format": FORMAT, "target_spec": dict(target_spec), "spd_edit": note},
    )
    write_param_group(root, TARGET, state, {"names": list(state)}, None)


def load_edited_toy_target(folder: str | Path) -> nn.Module:
    """The toy target `spd export` wrote into `folder`, frozen, in eval mode."""
    from spd_core.targets.registry import parse_target_spec, toy_target_from_state

    try:
        root = zarr.open_group(str(folder), mode="r", zarr_format=3)
    except FileNotFoundError:
        raise EditError(f"{folder} is not an edited toy target (no zarr.json)") from None
    if root.attrs.get("format") != FORMAT or TARGET not in root:
        raise EditError(f"{folder} is not an edited toy target written by `spd export`")
    group = root[TARGET]
    state = {
        k: torch.from_numpy(v) for k, v in read_params(group, group.attrs.get("names")).items()
    }
    spec = parse_target_spec(root.attrs["target_spec"]["spec"])
    return toy_target_from_state(spec, state).model
