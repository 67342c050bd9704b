"""Requests and decoded answers shared by the sync and asyncio clients (numpy in, numpy out)."""

from __future__ import annotations

from collections.abc import Iterable, Mapping, Sequence
from dataclasses import dataclass

import numpy as np

from spd_client.generated.spd.v1 import decomposition_service_pb2 as pb
from spd_client.tensor_codec import from_proto, to_proto

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
class TextImportances:
    """Per-token importances of one sequence: importances[module].values has one row per token
    (dense (T, C); top-k (T, k); threshold indices are (token, component))."""

    ids: list[int]
    tokens: list[str]
    importances: dict[str, Importances]


NextTokens = list[tuple[int, str, float]]
"""(id, token, probability) of the most probable next tokens, most probable first."""


@dataclass
class TextAblation:
    """Ablate on one sequence: divergence (S, 1); for causal LMs the next tokens at the last
    position under each of the S masks and the target's; for encoders the outputs instead."""

    ids: list[int]
    tokens: list[str]
    divergence: np.ndarray
    divergence_type: str
    next_tokens: list[NextTokens]
    target_next_tokens: NextTokens
    outputs: np.ndarray | None
    target_output: np.ndarray | None


@dataclass
class Components:
    """Rows of U (k, d_out) and V (k, d_in) of the components `indices` (k)."""

    indices: np.ndarray
    u: np.ndarray
    v: np.ndarray


def _set_input(
    request: pb.ComputeImportancesRequest | pb.AblateRequest,
    inputs: np.ndarray | None,
    text: str | None,
    token_ids: Sequence[int] | None,
) -> None:
    """Exactly one of a tensor, a text or token ids."""
    given = [
        n
        for n, v in (("inputs", inputs), ("text", text), ("token_ids", token_ids))
        if v is not None
    ]
    if len(given) != 1:
        raise ValueError(f"give exactly one of inputs, text or token_ids, got {given or 'none'}")
    if inputs is not None:
        request.inputs.CopyFrom(to_proto(np.asarray(inputs)))
    elif text is not None:
        request.text = text
    else:
        request.token_ids.ids.extend(int(i) for i in token_ids or ())


def importances_request(
    decomposition: str,
    inputs: np.ndarray | None,
    top_k: int | None = None,
    threshold: float | None = None,
    kind: str = "lower",
    modules: Iterable[str] = (),
    text: str | None = None,
    token_ids: Sequence[int] | None = None,
) -> pb.ComputeImportancesRequest:
    """Dense unless `top_k` or `threshold` is given (not both); the input is a tensor, or for
    language models a text or token ids."""
    if top_k is not None and threshold is not None:
        raise ValueError("give top_k or threshold, not both")
    if kind not in KINDS:
        raise ValueError(f"kind must be one of {sorted(KINDS)}, got {kind!r}")
    selection = pb.Selection(dense=pb.Dense())
    if top_k is not None:
        selection = pb.Selection(top_k=pb.TopK(k=top_k))
    elif threshold is not None:
        selection = pb.Selection(threshold=pb.Threshold(value=threshold))
    request = pb.ComputeImportancesRequest(
        decomposition=decomposition, selection=selection, kind=KINDS[kind], modules=list(modules)
    )
    _set_input(request, inputs, text, token_ids)
    return request


def ablate_request(
    decomposition: str,
    inputs: np.ndarray | None,
    mode: str,
    components: Mapping[str, Iterable[int]] | None = None,
    modules: Iterable[str] = (),
    use_delta: bool = False,
    n_samples: int = 1,
    seed: int = 0,
    rounding_threshold: float = 0.0,
    divergence: str | None = None,
    text: str | None = None,
    token_ids: Sequence[int] | None = None,
    top_k_tokens: int = 0,
) -> pb.AblateRequest:
    """See AblateRequest in the proto: `mode` keep | ablate | ci | rounded_ci | stochastic; the
    input is a tensor, or for language models a text or token ids."""
    if mode not in MASK_MODES:
        raise ValueError(f"mode must be one of {sorted(MASK_MODES)}, got {mode!r}")
    if divergence not in DIVERGENCES:
        raise ValueError(f"divergence must be 'mse', 'kl' or None, got {divergence!r}")
    request = pb.AblateRequest(
        decomposition=decomposition,
        top_k_tokens=top_k_tokens,
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
    _set_input(request, inputs, text, token_ids)
    return request


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


def decode_text_importances(response: pb.ComputeImportancesResponse) -> TextImportances:
    return TextImportances(
        list(response.tokens.ids),
        list(response.tokens.strings),
        decode_importances(response.importances),
    )


def _next(entry: pb.NextTokens) -> NextTokens:
    return list(zip(entry.ids, entry.strings, entry.probs, strict=True))


def decode_text_ablation(response: pb.AblateResponse) -> TextAblation:
    return TextAblation(
        ids=list(response.tokens.ids),
        tokens=list(response.tokens.strings),
        divergence=from_proto(response.divergence),
        divergence_type={v: k for k, v in DIVERGENCES.items() if k}[response.divergence_type],
        next_tokens=[_next(e) for e in response.next_tokens],
        target_next_tokens=_next(response.target_next_tokens),
        outputs=from_proto(response.outputs) if response.HasField("outputs") else None,
        target_output=(
            from_proto(response.target_output) if response.HasField("target_output") else None
        ),
    )
