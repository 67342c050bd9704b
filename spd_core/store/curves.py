"""Per-step training curves: an int64 ``step`` array plus one float64 array per curve."""

from __future__ import annotations

import math
from collections.abc import Mapping

import numpy as np
import zarr

from spd_core.store.codecs import CHECKED_COMPRESSORS
from spd_core.store.layout import RECORD_DIM, STEP
from spd_core.store.names import NAME_ATTR, node_name

CURVE_CHUNK = 4096


def create_step_array(training: zarr.Group) -> None:
    """The empty, resizable ``step`` array that defines how many records exist."""
    training.create_array(
        STEP,
        shape=(0,),
        chunks=(CURVE_CHUNK,),
        dtype="int64",
        fill_value=-1,
        dimension_names=(RECORD_DIM,),
        attributes={NAME_ATTR: STEP, "description": "training step of each record"},
        compressors=CHECKED_COMPRESSORS,
    )


def curve_arrays(training: zarr.Group) -> dict[str, zarr.Array]:
    """Curve name -> array, excluding ``step``."""
    out: dict[str, zarr.Array] = {}
    for key, arr in training.arrays():
        name = arr.attrs.get(NAME_ATTR, key)
        if name != STEP:
            out[str(name)] = arr
    return out


def append_record(
    training: zarr.Group, arrays: dict[str, zarr.Array], step: int, values: Mapping[str, float]
) -> None:
    """Append one record; new curves get NaN for earlier records, absent ones get NaN now.

    `arrays` is the caller's cache of curve arrays and is updated in place. ``step`` is grown
    last, so a crash mid-append leaves the record count (len(step)) consistent.
    """
    if STEP in values:
        raise ValueError(f"{STEP!r} is reserved for the step array; rename that curve")
    floats = {str(k): float(v) for k, v in values.items()}
    step_arr = training[STEP]
    n = step_arr.shape[0]
    for name in floats:
        if name not in arrays:
            arrays[name] = training.create_array(
                node_name(name),
                shape=(n,),
                chunks=(CURVE_CHUNK,),
                dtype="float64",
                fill_value=math.nan,
                dimension_names=(RECORD_DIM,),
                attributes={NAME_ATTR: name},
                compressors=CHECKED_COMPRESSORS,
            )
    for name, arr in arrays.items():
        if arr.shape[0] != n + 1:
            arr.resize((n + 1,))
        arr[n] = floats.get(name, math.nan)
    step_arr.resize((n + 1,))
    step_arr[n] = int(step)


def truncate_after(training: zarr.Group, step: int) -> int:
    """Drop the records logged after `step` (work a resumed run redoes); returns how many."""
    steps = np.asarray(training[STEP][:], dtype=np.int64)
    keep = int(np.searchsorted(steps, step, side="right"))
    if keep < steps.shape[0]:
        training[STEP].resize((keep,))
    return int(steps.shape[0] - keep)


def read_curves(training: zarr.Group) -> dict[str, np.ndarray]:
    """``step`` and every curve, each cut/padded (NaN) to the number of records."""
    steps = np.asarray(training[STEP][:], dtype=np.int64)
    n = steps.shape[0]
    out: dict[str, np.ndarray] = {STEP: steps}
    for name, arr in sorted(curve_arrays(training).items()):
        values = np.asarray(arr[: min(n, arr.shape[0])], dtype=np.float64)
        if values.shape[0] < n:
            values = np.concatenate([values, np.full(n - values.shape[0], np.nan)])
        out[name] = values
    return out
