"""A target built without its weights, and where they are read from later.

Target sharding builds the target with its parameters on the meta device (shapes only; buffers
such as rotary frequencies are computed as usual), shards it, and then fills each rank's shard
by reading only that rank's rows of every weight (`spd_core.train.parallel.target_loading`), so
no process ever holds the whole target. A `TargetWeights` reads any rows of a weight by its
state-dict name: from a safetensors file (the rows' bytes only, read into the shard), from a
torch file (memory-mapped: only the pages of the rows read come into memory), or from a state
dict already in memory (a toy target's, small enough to ship whole to every worker).
"""

from __future__ import annotations

import contextlib
import json
import struct
from collections.abc import Iterator, Mapping
from pathlib import Path
from typing import Protocol

import torch
from torch import Tensor, nn


@contextlib.contextmanager
def parameters_on_meta() -> Iterator[None]:
    """Modules built inside get their parameters on the meta device; their buffers are real.
    A parameter's CPU tensor is dropped before anything writes to it (no memory is touched)."""
    register = nn.Module.register_parameter

    def on_meta(module: nn.Module, name: str, param: nn.Parameter | None) -> None:
        if param is not None and not param.is_meta:
            param = nn.Parameter(param.to("meta"), requires_grad=param.requires_grad)
        register(module, name, param)

    nn.Module.register_parameter = on_meta  # type: ignore[method-assign]
    try:
        yield
    finally:
        nn.Module.register_parameter = register  # type: ignore[method-assign]


class TargetWeights(Protocol):
    """Rows of a target's weights by state-dict name."""

    def names(self) -> set[str]:
        """Every weight name this source holds."""
        ...

    def read(self, name: str, start: int, stop: int) -> Tensor:
        """Rows [start, stop) of weight `name` along its first dimension (a new tensor)."""
        ...

    def release(self) -> None:
        """Drop open files and mappings (a later read opens them again)."""
        ...


class StateDictWeights:
    """Weights from a state dict in memory (or memory-mapped by `torch.load(mmap=True)`)."""

    def __init__(self, state: Mapping[str, Tensor]):
        self.state = state

    def names(self) -> set[str]:
        return set(self.state)

    def read(self, name: str, start: int, stop: int) -> Tensor:
        return self.state[name][start:stop].clone()

    def release(self) -> None:
        pass


class TorchFileWeights:
    """Weights in a `torch.save` file, memory-mapped while reading: a read brings only the pages
    of its rows into memory, and `release` unmaps the file."""

    def __init__(self, path: Path):
        self.path = path
        self._state: StateDictWeights | None = None

    def _open(self) -> StateDictWeights:
        if self._state is None:
            mapped = torch.load(self.path, map_location="cpu", weights_only=True, mmap=True)
            self._state = StateDictWeights(mapped)
        return self._state

    def names(self) -> set[str]:
        return self._open().names()

    def read(self, name: str, start: int, stop: int) -> Tensor:
        return self._open().read(name, start, stop)

    def release(self) -> None:
        self._state = None


_SAFETENSORS_DTYPES = {
    "F64": torch.float64,
    "F32": torch.float32,
    "F16": torch.float16,
    "BF16": torch.bfloat16,
    "I64": torch.int64,
    "I32": torch.int32,
    "I16": torch.int16,
    "I8": torch.int8,
    "U8": torch.uint8,
    "BOOL": torch.bool,
}


class SafetensorsWeights:
    """Weights in safetensors files (a model folder's one file, or the shards its index names):
    a read seeks to its rows and reads their bytes straight into the tensor it returns."""

    def __init__(self, files: list[Path]):
        self.entries: dict[str, tuple[Path, int, torch.dtype, list[int]]] = {}
        for path in files:
            with path.open("rb") as f:
                (size,) = struct.unpack("<Q", f.read(8))
                header = json.loads(f.read(size))
            for name, info in header.items():
                if name == "__metadata__":
                    continue
                offset = 8 + size + info["data_offsets"][0]
                self.entries[name] = (
                    path,
                    offset,
                    _SAFETENSORS_DTYPES[info["dtype"]],
                    info["shape"],
                )

    @classmethod
    def of_folder(cls, folder: Path) -> SafetensorsWeights | None:
        """The folder's safetensors weights (sharded or not); None when it has none."""
        index = folder / "model.safetensors.index.json"
        if index.is_file():
            files = sorted(set(json.loads(index.read_text())["weight_map"].values()))
            return cls([folder / f for f in files])
        single = folder / "model.safetensors"
        return cls([single]) if single.is_file() else None

    def names(self) -> set[str]:
        return set(self.entries)

    def read(self, name: str, start: int, stop: int) -> Tensor:
        path, offset, dtype, shape = self.entries[name]
        rows = max(0, min(stop, shape[0]) - start)
        out = torch.empty([rows, *shape[1:]], dtype=dtype)
        if rows == 0:
            return out
        with path.open("rb") as f:
            f.seek(offset + start * (out.nbytes // rows))
            if f.readinto(out.view(torch.uint8).numpy()) != out.nbytes:
                raise OSError(f"{path}: weight '{name}' ends before its rows [{start}, {stop})")
        return out

    def release(self) -> None:
        pass
