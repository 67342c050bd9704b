"""numpy arrays <-> spd.v1.Tensor (shape, dtype, raw little-endian bytes)."""

from __future__ import annotations

import math

import numpy as np

from spd_client.generated.spd.v1 import tensor_pb2 as pb

DTYPES: dict[int, np.dtype] = {
    pb.DTYPE_FLOAT32: np.dtype("<f4"),
    pb.DTYPE_FLOAT64: np.dtype("<f8"),
    pb.DTYPE_FLOAT16: np.dtype("<f2"),
    pb.DTYPE_INT32: np.dtype("<i4"),
    pb.DTYPE_INT64: np.dtype("<i8"),
}
_CODES = {dtype: code for code, dtype in DTYPES.items()}


class TensorDecodeError(ValueError):
    """A Tensor message whose dtype, shape and byte count do not fit together."""


def dtype_code(dtype: np.dtype) -> int:
    """The DType enum value of a numpy dtype (any byte order)."""
    key = np.dtype(dtype).newbyteorder("<")
    if key not in _CODES:
        names = ", ".join(str(d) for d in DTYPES.values())
        raise TypeError(f"dtype {np.dtype(dtype)} cannot be sent; use one of {names}")
    return _CODES[key]


def dtype_name(code: int) -> str:
    """Readable name of a DType value: 'float32', or the enum name / number when unsupported."""
    if code in DTYPES:
        return str(DTYPES[code])
    return pb.DType.Name(code) if code in pb.DType.values() else f"unknown dtype {code}"


def to_proto(array: np.ndarray) -> pb.Tensor:
    """Encode an array (copied to little-endian, row-major)."""
    array = np.asarray(array)
    code = dtype_code(array.dtype)
    data = np.ascontiguousarray(array, dtype=DTYPES[code]).tobytes()
    return pb.Tensor(shape=list(array.shape), dtype=code, data=data)


def from_proto(tensor: pb.Tensor) -> np.ndarray:
    """Decode a Tensor into a writable native-order array; TensorDecodeError says what is wrong."""
    if tensor.dtype not in DTYPES:
        known = ", ".join(pb.DType.Name(c) for c in DTYPES)
        raise TensorDecodeError(f"dtype {dtype_name(tensor.dtype)} is not supported; use {known}")
    shape = tuple(int(s) for s in tensor.shape)
    if any(s < 0 for s in shape):
        raise TensorDecodeError(f"shape {list(shape)} has a negative dimension")
    dtype = DTYPES[tensor.dtype]
    expected = math.prod(shape) * dtype.itemsize
    if len(tensor.data) != expected:
        raise TensorDecodeError(
            f"data has {len(tensor.data)} bytes but shape {list(shape)} of {dtype} needs "
            f"{expected}; send row-major little-endian bytes of exactly that size"
        )
    native = np.frombuffer(tensor.data, dtype=dtype).astype(dtype.newbyteorder("="))
    return native.reshape(shape)
