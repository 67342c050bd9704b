"""Converting caller values (tensors, numpy scalars) into arrays and strict JSON."""

from __future__ import annotations

import json
import math
from typing import Any

import numpy as np


def to_numpy(x: Any, dtype: np.dtype | type | None = None) -> np.ndarray:
    """A numpy copy of a torch tensor (any device, grad or not) or array-like."""
    if hasattr(x, "detach") and hasattr(x, "cpu"):  # torch.Tensor, without importing torch
        t = x.detach().cpu()
        if str(t.dtype) in ("torch.bfloat16", "torch.float8_e4m3fn", "torch.float8_e5m2"):
            t = t.float()
        x = t.numpy()
    arr = np.asarray(x)
    return arr.astype(dtype, copy=False) if dtype is not None else arr


def _normalize(obj: Any, where: str, nonfinite_to_null: bool) -> Any:
    if isinstance(obj, np.generic):
        obj = obj.item()
    elif isinstance(obj, np.ndarray):
        obj = obj.tolist()
    if isinstance(obj, dict):
        out = {}
        for k, v in obj.items():
            if not isinstance(k, str):
                raise ValueError(f"{where}: keys must be str, got {k!r}")
            out[k] = _normalize(v, f"{where}.{k}", nonfinite_to_null)
        return out
    if isinstance(obj, list | tuple):
        return [_normalize(v, f"{where}[{i}]", nonfinite_to_null) for i, v in enumerate(obj)]
    if isinstance(obj, float) and not math.isfinite(obj):
        if nonfinite_to_null:
            return None
        raise ValueError(f"{where}: {obj} is not valid JSON; use None")
    if obj is None or isinstance(obj, bool | int | float | str):
        return obj
    raise ValueError(f"{where}: {type(obj).__name__} is not JSON-able")


def jsonable(obj: Any, where: str, *, nonfinite_to_null: bool = False) -> Any:
    """`obj` as strict JSON (numpy scalars/arrays converted); ValueError naming the bad key.

    With `nonfinite_to_null`, NaN/inf floats become None instead of raising.
    """
    out = _normalize(obj, where, nonfinite_to_null)
    json.dumps(out, allow_nan=False)
    return out
