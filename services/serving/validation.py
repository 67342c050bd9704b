"""Checks every request field before any compute; failures are RequestErrors with a fix."""

from __future__ import annotations

import math
from collections.abc import Sequence

import numpy as np
import torch
from torch import Tensor

from services.serving.errors import exhausted, invalid, not_found
from services.serving.importance_selection import Selection
from services.serving.limits import Limits
from spd_client.generated.spd.v1 import decomposition_service_pb2 as pb
from spd_client.generated.spd.v1 import tensor_pb2
from spd_client.tensor_codec import TensorDecodeError, dtype_code, dtype_name, from_proto
from spd_core.queries import IOSignature, MaskMode, MaskSpec

_MASK_MODES: dict[int, MaskMode] = {
    pb.MASK_MODE_KEEP: "keep",
    pb.MASK_MODE_ABLATE: "ablate",
    pb.MASK_MODE_CI: "ci",
    pb.MASK_MODE_ROUNDED_CI: "rounded_ci",
    pb.MASK_MODE_STOCHASTIC: "stochastic",
}


def _enum_name(enum: object, value: int) -> str:
    return enum.Name(value) if value in enum.values() else str(value)  # type: ignore[attr-defined]


def decode_inputs(
    tensor: tensor_pb2.Tensor, present: bool, signature: IOSignature, max_inputs: int, hint: str
) -> Tensor:
    """The request's inputs as a tensor (N, *input_shape) of the target's dtype, all finite.
    `hint` says what to do when there are more than `max_inputs`."""
    expected_shape = ["N", *signature.input_shape]
    if not present:
        raise invalid(f"inputs are missing: send a Tensor of shape {expected_shape}")
    np_dtype = torch.empty(0, dtype=signature.input_dtype).numpy().dtype
    if tensor.dtype != dtype_code(np_dtype):
        raise invalid(
            f"inputs have dtype {dtype_name(tensor.dtype)}; this decomposition takes {np_dtype} "
            f"({tensor_pb2.DType.Name(dtype_code(np_dtype))})"
        )
    shape = list(tensor.shape)
    if len(shape) != len(expected_shape) or shape[1:] != list(signature.input_shape):
        raise invalid(f"inputs have shape {shape}; expected {expected_shape}")
    if shape[0] < 1:
        raise invalid("inputs are empty (N = 0); send at least one input")
    if shape[0] > max_inputs:
        raise exhausted(
            f"{shape[0]} inputs exceed this server's limit of {max_inputs} per request; {hint}"
        )
    try:
        array = from_proto(tensor)
    except TensorDecodeError as err:
        raise invalid(f"inputs: {err}") from None
    if array.dtype.kind == "f" and not np.isfinite(array).all():
        bad = int(np.argwhere(~np.isfinite(array))[0][0])
        raise invalid(f"inputs contain NaN or Inf (first at input {bad}); send finite values")
    vocab = signature.vocab_size
    if vocab is not None and array.size and (array.min() < 0 or array.max() >= vocab):
        bad = int(np.argwhere((array < 0) | (array >= vocab))[0][0])
        raise invalid(
            f"inputs hold token ids outside [0, {vocab}) (first at input {bad}); "
            f"this decomposition's vocabulary has {vocab} tokens"
        )
    return torch.from_numpy(array)


def modules(requested: Sequence[str], known: Sequence[str], decomposition: str) -> list[str]:
    """Requested module paths in forward order (all when empty); NOT_FOUND for unknown ones."""
    for name in requested:
        if name not in known:
            raise not_found(
                f"module {name!r} is not decomposed in {decomposition!r}; its modules are: "
                f"{', '.join(known)}"
            )
    return [n for n in known if n in set(requested)] if requested else list(known)


def components(indices: Sequence[int], C: int, module: str) -> list[int]:
    """Component indices of `module`, each in [0, C); NOT_FOUND names the valid range."""
    for i in indices:
        if not 0 <= i < C:
            raise not_found(f"module {module!r} has no component {i}: it has C = {C} (0..{C - 1})")
    return list(indices)


def selection(message: pb.Selection) -> Selection:
    """Dense (default), top-k (k >= 1) or threshold (finite)."""
    mode = message.WhichOneof("mode")
    if mode == "top_k":
        if message.top_k.k < 1:
            raise invalid(f"selection.top_k.k must be >= 1, got {message.top_k.k}")
        return Selection("top_k", k=message.top_k.k)
    if mode == "threshold":
        if not math.isfinite(message.threshold.value):
            raise invalid("selection.threshold.value must be a finite number")
        return Selection("threshold", threshold=message.threshold.value)
    return Selection()


def importance_kind(kind: int) -> str:
    """'lower' (default) or 'upper'."""
    if kind in (pb.IMPORTANCE_KIND_UNSPECIFIED, pb.IMPORTANCE_KIND_LOWER):
        return "lower"
    if kind == pb.IMPORTANCE_KIND_UPPER:
        return "upper"
    raise invalid(f"kind {kind} is not an ImportanceKind; use IMPORTANCE_KIND_LOWER or _UPPER")


def mask_spec(
    request: pb.AblateRequest,
    module_C: dict[str, int],
    n_inputs: int,
    out_size: int,
    limits: Limits,
) -> MaskSpec:
    """The AblateRequest's mask spec for spd_core, after checking modes, modules, components,
    samples and the size of the answer."""
    if request.mode not in _MASK_MODES:
        names = ", ".join(pb.MaskMode.Name(m) for m in _MASK_MODES)
        raise invalid(f"mode is {_enum_name(pb.MaskMode, request.mode)}; set one of {names}")
    mode = _MASK_MODES[request.mode]
    replaced = modules(request.modules, list(module_C), request.decomposition)
    listed: dict[str, list[int]] = {}
    if request.components and mode not in ("keep", "ablate"):
        raise invalid(f"components are only used with MASK_MODE_KEEP/ABLATE, not {mode}")
    for name, entry in request.components.items():
        modules([name], list(module_C), request.decomposition)
        if name not in replaced:
            raise invalid(
                f"components lists module {name!r}, which is not replaced; add it to modules "
                "(or leave modules empty to replace all)"
            )
        listed[name] = components(entry.indices, module_C[name], name)
    n_samples = request.n_samples or 1
    if n_samples < 1:
        raise invalid(f"n_samples must be >= 1, got {request.n_samples}")
    if n_samples > 1 and mode != "stochastic":
        raise invalid(f"n_samples > 1 needs MASK_MODE_STOCHASTIC, not {mode}")
    if n_samples > limits.max_samples:
        raise exhausted(
            f"n_samples {n_samples} exceeds this server's limit of {limits.max_samples}"
        )
    if n_samples * n_inputs * out_size > limits.max_output_elements:
        raise exhausted(
            f"the answer would hold {n_samples} x {n_inputs} x {out_size} output values, over this "
            f"server's limit of {limits.max_output_elements}; send fewer inputs or samples"
        )
    if not math.isfinite(request.rounding_threshold):
        raise invalid("rounding_threshold must be a finite number")
    return MaskSpec(
        mode=mode,
        modules=replaced,
        components=listed,
        use_delta=request.use_delta,
        n_samples=n_samples,
        seed=request.seed,
        rounding_threshold=request.rounding_threshold,
    )


def divergence(value: int, default: str) -> str:
    """'mse' or 'kl'; unspecified means the decomposition's own `default`."""
    choices = {pb.DIVERGENCE_MSE: "mse", pb.DIVERGENCE_KL: "kl"}
    if value == pb.DIVERGENCE_UNSPECIFIED:
        return default
    if value not in choices:
        raise invalid(f"divergence {value} is not a Divergence; use DIVERGENCE_MSE or _KL")
    return choices[value]


def top_k_tokens(value: int, vocab_size: int) -> int:
    """How many next tokens Ablate returns for a causal LM: 0 means 10; at most the vocabulary."""
    if value < 0:
        raise invalid(f"top_k_tokens must be >= 0 (0 means 10), got {value}")
    k = value or 10
    if vocab_size and k > vocab_size:
        raise invalid(f"top_k_tokens {k} exceeds the vocabulary size {vocab_size}; ask for fewer")
    return k
