"""Requests and decoded answers shared by the sync and asyncio clients (numpy in, numpy out)."""

from __future__ import annotations

from collections.abc import Iterable, Mapping
from dataclasses import dataclass

import numpy as np

from services.generated.spd.v1 import decomposition_service_pb2 as pb
from services.serving.tensor_codec import from_proto, to_proto

MASK_MODES = {
    "keep": pb.MASK_MODE_KEEP,
    "ablate": pb.MASK_MODE_ABLATE,
    "ci": pb.MASK_MODE_CI,
    "rounded_ci": pb.MASK_MODE_ROUNDED_CI,
    "stochastic": pb.MASK_MODE_STOCHASTIC,
}
DIVERGENCES = {None: pb.DIVERGENCE_UNSPECIFIED, "mse": pb.DIVERGENCE_MSE, "kl": pb.DIVERGENCE_KL}
KINDS = {"lower": pb.IMPORTANCE_KIND_LOWER, "upper": pb.IMPORTANCE_KIND_UPPER}


@dataclass
class Importances:
    """One module's importances. Dense: values (N, C), indices None. Top-k: values (N, k),
    indices (N, k) components. Threshold: values (nnz,), indices (nnz, 2) (input, component)."""

    values: np.ndarray
    indices: np.ndarray | None


@dataclass
class ImportancesChunk:
    """Importances of inputs [start, stop) of a stream (threshold input indices from start)."""

    start: int
    stop: int
    importances: dict[str, Importances]


@dataclass
class Ablation:
    """outputs (S, N, …), target_output (N, …), divergence (S, N) of each output ('mse'/'kl')."""

    outputs: np.ndarray
    target_output: np.ndarray
    divergence: np.ndarray
    divergence_type: str


@dataclass
class Components:
    """Rows of U (k, d_out) and V (k, d_in) of the components `indices` (k)."""

    indices: np.ndarray
    u: np.ndarray
    v: np.ndarray


def importances_request(
    decomposition: str,
    inputs: np.ndarray,
    top_k: int | None = None,
    threshold: float | None = None,
    kind: str = "lower",
    modules: Iterable[str] = (),
) -> pb.ComputeImportancesRequest:
    """Dense unless `top_k` or `threshold` is given (not both)."""
    if top_k is not None and threshold is not None:
        raise ValueError("give top_k or threshold, not both")
    if kind not in KINDS:
        raise ValueError(f"kind must be one of {sorted(KINDS)}, got {kind!r}")
    selection = pb.Selection(dense=pb.Dense())
    if top_k is not None:
        selection = pb.Selection(top_k=pb.TopK(k=top_k))
    elif threshold is not None:
        selection = pb.Selection(threshold=pb.Threshold(value=threshold))
    return pb.ComputeImportancesRequest(
        decomposition=decomposition,
        inputs=to_proto(np.asarray(inputs)),
        selection=selection,
        kind=KINDS[kind],
        modules=list(modules),
    )


def ablate_request(
    decomposition: str,
    inputs: np.ndarray,
    mode: str,
    components: Mapping[str, Iterable[int]] | None = None,
    modules: Iterable[str] = (),
    use_delta: bool = False,
    n_samples: int = 1,
    seed: int = 0,
    rounding_threshold: float = 0.0,
    divergence: str | None = None,
) -> pb.AblateRequest:
    """See AblateRequest in the proto: `mode` keep | ablate | ci | rounded_ci | stochastic."""
    if mode not in MASK_MODES:
        raise ValueError(f"mode must be one of {sorted(MASK_MODES)}, got {mode!r}")
    if divergence not in DIVERGENCES:
        raise ValueError(f"divergence must be 'mse', 'kl' or None, got {divergence!r}")
    return pb.AblateRequest(
        decomposition=decomposition,
        inputs=to_proto(np.asarray(inputs)),
        modules=list(modules),
        mode=MASK_MODES[mode],
        components={
            m: pb.ComponentIndices(indices=[int(i) for i in idx])
            for m, idx in (components or {}).items()
        },
        use_delta=use_delta,
        n_samples=n_samples,
        seed=seed,
        rounding_threshold=rounding_threshold,
        divergence=DIVERGENCES[divergence],
    )


def components_request(
    decomposition: str, module: str, components: Iterable[int] = ()
) -> pb.GetComponentsRequest:
    return pb.GetComponentsRequest(
        decomposition=decomposition, module=module, components=[int(c) for c in components]
    )


def decode_importances(entries: Iterable[pb.ModuleImportances]) -> dict[str, Importances]:
    return {
        e.module: Importances(
            from_proto(e.values), from_proto(e.indices) if e.HasField("indices") else None
        )
        for e in entries
    }


def decode_chunk(chunk: pb.ImportancesChunk) -> ImportancesChunk:
    return ImportancesChunk(chunk.start, chunk.stop, decode_importances(chunk.importances))


def decode_ablation(response: pb.AblateResponse) -> Ablation:
    return Ablation(
        from_proto(response.outputs),
        from_proto(response.target_output),
        from_proto(response.divergence),
        {v: k for k, v in DIVERGENCES.items() if k}[response.divergence_type],
    )


def decode_components(response: pb.GetComponentsResponse) -> Components:
    return Components(
        from_proto(response.components), from_proto(response.u), from_proto(response.v)
    )
