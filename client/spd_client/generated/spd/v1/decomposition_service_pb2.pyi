from spd_client.generated.spd.v1 import harvest_pb2 as _harvest_pb2
from spd_client.generated.spd.v1 import tensor_pb2 as _tensor_pb2
from google.protobuf.internal import containers as _containers
from google.protobuf.internal import enum_type_wrapper as _enum_type_wrapper
from google.protobuf import descriptor as _descriptor
from google.protobuf import message as _message
from collections.abc import Iterable as _Iterable, Mapping as _Mapping
from typing import ClassVar as _ClassVar, Optional as _Optional, Union as _Union

DESCRIPTOR: _descriptor.FileDescriptor

class ImportanceKind(int, metaclass=_enum_type_wrapper.EnumTypeWrapper):
    __slots__ = ()
    IMPORTANCE_KIND_UNSPECIFIED: _ClassVar[ImportanceKind]
    IMPORTANCE_KIND_LOWER: _ClassVar[ImportanceKind]
    IMPORTANCE_KIND_UPPER: _ClassVar[ImportanceKind]

class MaskMode(int, metaclass=_enum_type_wrapper.EnumTypeWrapper):
    __slots__ = ()
    MASK_MODE_UNSPECIFIED: _ClassVar[MaskMode]
    MASK_MODE_KEEP: _ClassVar[MaskMode]
    MASK_MODE_ABLATE: _ClassVar[MaskMode]
    MASK_MODE_CI: _ClassVar[MaskMode]
    MASK_MODE_ROUNDED_CI: _ClassVar[MaskMode]
    MASK_MODE_STOCHASTIC: _ClassVar[MaskMode]

class Divergence(int, metaclass=_enum_type_wrapper.EnumTypeWrapper):
    __slots__ = ()
    DIVERGENCE_UNSPECIFIED: _ClassVar[Divergence]
    DIVERGENCE_MSE: _ClassVar[Divergence]
    DIVERGENCE_KL: _ClassVar[Divergence]

class AttributionOutput(int, metaclass=_enum_type_wrapper.EnumTypeWrapper):
    __slots__ = ()
    ATTRIBUTION_OUTPUT_UNSPECIFIED: _ClassVar[AttributionOutput]
    ATTRIBUTION_OUTPUT_NONE: _ClassVar[AttributionOutput]
    ATTRIBUTION_OUTPUT_LOGIT: _ClassVar[AttributionOutput]
    ATTRIBUTION_OUTPUT_LOSS: _ClassVar[AttributionOutput]
IMPORTANCE_KIND_UNSPECIFIED: ImportanceKind
IMPORTANCE_KIND_LOWER: ImportanceKind
IMPORTANCE_KIND_UPPER: ImportanceKind
MASK_MODE_UNSPECIFIED: MaskMode
MASK_MODE_KEEP: MaskMode
MASK_MODE_ABLATE: MaskMode
MASK_MODE_CI: MaskMode
MASK_MODE_ROUNDED_CI: MaskMode
MASK_MODE_STOCHASTIC: MaskMode
DIVERGENCE_UNSPECIFIED: Divergence
DIVERGENCE_MSE: Divergence
DIVERGENCE_KL: Divergence
ATTRIBUTION_OUTPUT_UNSPECIFIED: AttributionOutput
ATTRIBUTION_OUTPUT_NONE: AttributionOutput
ATTRIBUTION_OUTPUT_LOGIT: AttributionOutput
ATTRIBUTION_OUTPUT_LOSS: AttributionOutput

class ListDecompositionsRequest(_message.Message):
    __slots__ = ()
    def __init__(self) -> None: ...

class ListDecompositionsResponse(_message.Message):
    __slots__ = ("decompositions",)
    DECOMPOSITIONS_FIELD_NUMBER: _ClassVar[int]
    decompositions: _containers.RepeatedCompositeFieldContainer[Decomposition]
    def __init__(self, decompositions: _Optional[_Iterable[_Union[Decomposition, _Mapping]]] = ...) -> None: ...

class GetDecompositionRequest(_message.Message):
    __slots__ = ("name",)
    NAME_FIELD_NUMBER: _ClassVar[int]
    name: str
    def __init__(self, name: _Optional[str] = ...) -> None: ...

class Module(_message.Message):
    __slots__ = ("name", "kind", "c", "d_in", "d_out", "alive", "l0")
    NAME_FIELD_NUMBER: _ClassVar[int]
    KIND_FIELD_NUMBER: _ClassVar[int]
    C_FIELD_NUMBER: _ClassVar[int]
    D_IN_FIELD_NUMBER: _ClassVar[int]
    D_OUT_FIELD_NUMBER: _ClassVar[int]
    ALIVE_FIELD_NUMBER: _ClassVar[int]
    L0_FIELD_NUMBER: _ClassVar[int]
    name: str
    kind: str
    c: int
    d_in: int
    d_out: int
    alive: int
    l0: float
    def __init__(self, name: _Optional[str] = ..., kind: _Optional[str] = ..., c: _Optional[int] = ..., d_in: _Optional[int] = ..., d_out: _Optional[int] = ..., alive: _Optional[int] = ..., l0: _Optional[float] = ...) -> None: ...

class Decomposition(_message.Message):
    __slots__ = ("name", "store_path", "target", "modules", "input_shape", "input_dtype", "output_shape", "output_loss_type", "config_json", "metrics", "text_model", "context_length", "vocab_size", "causal_lm")
    class MetricsEntry(_message.Message):
        __slots__ = ("key", "value")
        KEY_FIELD_NUMBER: _ClassVar[int]
        VALUE_FIELD_NUMBER: _ClassVar[int]
        key: str
        value: float
        def __init__(self, key: _Optional[str] = ..., value: _Optional[float] = ...) -> None: ...
    NAME_FIELD_NUMBER: _ClassVar[int]
    STORE_PATH_FIELD_NUMBER: _ClassVar[int]
    TARGET_FIELD_NUMBER: _ClassVar[int]
    MODULES_FIELD_NUMBER: _ClassVar[int]
    INPUT_SHAPE_FIELD_NUMBER: _ClassVar[int]
    INPUT_DTYPE_FIELD_NUMBER: _ClassVar[int]
    OUTPUT_SHAPE_FIELD_NUMBER: _ClassVar[int]
    OUTPUT_LOSS_TYPE_FIELD_NUMBER: _ClassVar[int]
    CONFIG_JSON_FIELD_NUMBER: _ClassVar[int]
    METRICS_FIELD_NUMBER: _ClassVar[int]
    TEXT_MODEL_FIELD_NUMBER: _ClassVar[int]
    CONTEXT_LENGTH_FIELD_NUMBER: _ClassVar[int]
    VOCAB_SIZE_FIELD_NUMBER: _ClassVar[int]
    CAUSAL_LM_FIELD_NUMBER: _ClassVar[int]
    name: str
    store_path: str
    target: str
    modules: _containers.RepeatedCompositeFieldContainer[Module]
    input_shape: _containers.RepeatedScalarFieldContainer[int]
    input_dtype: _tensor_pb2.DType
    output_shape: _containers.RepeatedScalarFieldContainer[int]
    output_loss_type: str
    config_json: str
    metrics: _containers.ScalarMap[str, float]
    text_model: bool
    context_length: int
    vocab_size: int
    causal_lm: bool
    def __init__(self, name: _Optional[str] = ..., store_path: _Optional[str] = ..., target: _Optional[str] = ..., modules: _Optional[_Iterable[_Union[Module, _Mapping]]] = ..., input_shape: _Optional[_Iterable[int]] = ..., input_dtype: _Optional[_Union[_tensor_pb2.DType, str]] = ..., output_shape: _Optional[_Iterable[int]] = ..., output_loss_type: _Optional[str] = ..., config_json: _Optional[str] = ..., metrics: _Optional[_Mapping[str, float]] = ..., text_model: _Optional[bool] = ..., context_length: _Optional[int] = ..., vocab_size: _Optional[int] = ..., causal_lm: _Optional[bool] = ...) -> None: ...

class TokenIds(_message.Message):
    __slots__ = ("ids",)
    IDS_FIELD_NUMBER: _ClassVar[int]
    ids: _containers.RepeatedScalarFieldContainer[int]
    def __init__(self, ids: _Optional[_Iterable[int]] = ...) -> None: ...

class Tokens(_message.Message):
    __slots__ = ("ids", "strings")
    IDS_FIELD_NUMBER: _ClassVar[int]
    STRINGS_FIELD_NUMBER: _ClassVar[int]
    ids: _containers.RepeatedScalarFieldContainer[int]
    strings: _containers.RepeatedScalarFieldContainer[str]
    def __init__(self, ids: _Optional[_Iterable[int]] = ..., strings: _Optional[_Iterable[str]] = ...) -> None: ...

class Selection(_message.Message):
    __slots__ = ("dense", "top_k", "threshold")
    DENSE_FIELD_NUMBER: _ClassVar[int]
    TOP_K_FIELD_NUMBER: _ClassVar[int]
    THRESHOLD_FIELD_NUMBER: _ClassVar[int]
    dense: Dense
    top_k: TopK
    threshold: Threshold
    def __init__(self, dense: _Optional[_Union[Dense, _Mapping]] = ..., top_k: _Optional[_Union[TopK, _Mapping]] = ..., threshold: _Optional[_Union[Threshold, _Mapping]] = ...) -> None: ...

class Dense(_message.Message):
    __slots__ = ()
    def __init__(self) -> None: ...

class TopK(_message.Message):
    __slots__ = ("k",)
    K_FIELD_NUMBER: _ClassVar[int]
    k: int
    def __init__(self, k: _Optional[int] = ...) -> None: ...

class Threshold(_message.Message):
    __slots__ = ("value",)
    VALUE_FIELD_NUMBER: _ClassVar[int]
    value: float
    def __init__(self, value: _Optional[float] = ...) -> None: ...

class ModuleImportances(_message.Message):
    __slots__ = ("module", "values", "indices")
    MODULE_FIELD_NUMBER: _ClassVar[int]
    VALUES_FIELD_NUMBER: _ClassVar[int]
    INDICES_FIELD_NUMBER: _ClassVar[int]
    module: str
    values: _tensor_pb2.Tensor
    indices: _tensor_pb2.Tensor
    def __init__(self, module: _Optional[str] = ..., values: _Optional[_Union[_tensor_pb2.Tensor, _Mapping]] = ..., indices: _Optional[_Union[_tensor_pb2.Tensor, _Mapping]] = ...) -> None: ...

class ComputeImportancesRequest(_message.Message):
    __slots__ = ("decomposition", "inputs", "selection", "kind", "modules", "text", "token_ids")
    DECOMPOSITION_FIELD_NUMBER: _ClassVar[int]
    INPUTS_FIELD_NUMBER: _ClassVar[int]
    SELECTION_FIELD_NUMBER: _ClassVar[int]
    KIND_FIELD_NUMBER: _ClassVar[int]
    MODULES_FIELD_NUMBER: _ClassVar[int]
    TEXT_FIELD_NUMBER: _ClassVar[int]
    TOKEN_IDS_FIELD_NUMBER: _ClassVar[int]
    decomposition: str
    inputs: _tensor_pb2.Tensor
    selection: Selection
    kind: ImportanceKind
    modules: _containers.RepeatedScalarFieldContainer[str]
    text: str
    token_ids: TokenIds
    def __init__(self, decomposition: _Optional[str] = ..., inputs: _Optional[_Union[_tensor_pb2.Tensor, _Mapping]] = ..., selection: _Optional[_Union[Selection, _Mapping]] = ..., kind: _Optional[_Union[ImportanceKind, str]] = ..., modules: _Optional[_Iterable[str]] = ..., text: _Optional[str] = ..., token_ids: _Optional[_Union[TokenIds, _Mapping]] = ...) -> None: ...

class ComputeImportancesResponse(_message.Message):
    __slots__ = ("importances", "tokens")
    IMPORTANCES_FIELD_NUMBER: _ClassVar[int]
    TOKENS_FIELD_NUMBER: _ClassVar[int]
    importances: _containers.RepeatedCompositeFieldContainer[ModuleImportances]
    tokens: Tokens
    def __init__(self, importances: _Optional[_Iterable[_Union[ModuleImportances, _Mapping]]] = ..., tokens: _Optional[_Union[Tokens, _Mapping]] = ...) -> None: ...

class StreamImportancesRequest(_message.Message):
    __slots__ = ("request", "chunk_size")
    REQUEST_FIELD_NUMBER: _ClassVar[int]
    CHUNK_SIZE_FIELD_NUMBER: _ClassVar[int]
    request: ComputeImportancesRequest
    chunk_size: int
    def __init__(self, request: _Optional[_Union[ComputeImportancesRequest, _Mapping]] = ..., chunk_size: _Optional[int] = ...) -> None: ...

class ImportancesChunk(_message.Message):
    __slots__ = ("start", "stop", "importances")
    START_FIELD_NUMBER: _ClassVar[int]
    STOP_FIELD_NUMBER: _ClassVar[int]
    IMPORTANCES_FIELD_NUMBER: _ClassVar[int]
    start: int
    stop: int
    importances: _containers.RepeatedCompositeFieldContainer[ModuleImportances]
    def __init__(self, start: _Optional[int] = ..., stop: _Optional[int] = ..., importances: _Optional[_Iterable[_Union[ModuleImportances, _Mapping]]] = ...) -> None: ...

class ComponentIndices(_message.Message):
    __slots__ = ("indices",)
    INDICES_FIELD_NUMBER: _ClassVar[int]
    indices: _containers.RepeatedScalarFieldContainer[int]
    def __init__(self, indices: _Optional[_Iterable[int]] = ...) -> None: ...

class AblateRequest(_message.Message):
    __slots__ = ("decomposition", "inputs", "modules", "mode", "components", "use_delta", "n_samples", "seed", "rounding_threshold", "divergence", "text", "token_ids", "top_k_tokens")
    class ComponentsEntry(_message.Message):
        __slots__ = ("key", "value")
        KEY_FIELD_NUMBER: _ClassVar[int]
        VALUE_FIELD_NUMBER: _ClassVar[int]
        key: str
        value: ComponentIndices
        def __init__(self, key: _Optional[str] = ..., value: _Optional[_Union[ComponentIndices, _Mapping]] = ...) -> None: ...
    DECOMPOSITION_FIELD_NUMBER: _ClassVar[int]
    INPUTS_FIELD_NUMBER: _ClassVar[int]
    MODULES_FIELD_NUMBER: _ClassVar[int]
    MODE_FIELD_NUMBER: _ClassVar[int]
    COMPONENTS_FIELD_NUMBER: _ClassVar[int]
    USE_DELTA_FIELD_NUMBER: _ClassVar[int]
    N_SAMPLES_FIELD_NUMBER: _ClassVar[int]
    SEED_FIELD_NUMBER: _ClassVar[int]
    ROUNDING_THRESHOLD_FIELD_NUMBER: _ClassVar[int]
    DIVERGENCE_FIELD_NUMBER: _ClassVar[int]
    TEXT_FIELD_NUMBER: _ClassVar[int]
    TOKEN_IDS_FIELD_NUMBER: _ClassVar[int]
    TOP_K_TOKENS_FIELD_NUMBER: _ClassVar[int]
    decomposition: str
    inputs: _tensor_pb2.Tensor
    modules: _containers.RepeatedScalarFieldContainer[str]
    mode: MaskMode
    components: _containers.MessageMap[str, ComponentIndices]
    use_delta: bool
    n_samples: int
    seed: int
    rounding_threshold: float
    divergence: Divergence
    text: str
    token_ids: TokenIds
    top_k_tokens: int
    def __init__(self, decomposition: _Optional[str] = ..., inputs: _Optional[_Union[_tensor_pb2.Tensor, _Mapping]] = ..., modules: _Optional[_Iterable[str]] = ..., mode: _Optional[_Union[MaskMode, str]] = ..., components: _Optional[_Mapping[str, ComponentIndices]] = ..., use_delta: _Optional[bool] = ..., n_samples: _Optional[int] = ..., seed: _Optional[int] = ..., rounding_threshold: _Optional[float] = ..., divergence: _Optional[_Union[Divergence, str]] = ..., text: _Optional[str] = ..., token_ids: _Optional[_Union[TokenIds, _Mapping]] = ..., top_k_tokens: _Optional[int] = ...) -> None: ...

class NextTokens(_message.Message):
    __slots__ = ("ids", "strings", "probs")
    IDS_FIELD_NUMBER: _ClassVar[int]
    STRINGS_FIELD_NUMBER: _ClassVar[int]
    PROBS_FIELD_NUMBER: _ClassVar[int]
    ids: _containers.RepeatedScalarFieldContainer[int]
    strings: _containers.RepeatedScalarFieldContainer[str]
    probs: _containers.RepeatedScalarFieldContainer[float]
    def __init__(self, ids: _Optional[_Iterable[int]] = ..., strings: _Optional[_Iterable[str]] = ..., probs: _Optional[_Iterable[float]] = ...) -> None: ...

class AblateResponse(_message.Message):
    __slots__ = ("outputs", "target_output", "divergence", "divergence_type", "tokens", "next_tokens", "target_next_tokens", "position_divergence")
    OUTPUTS_FIELD_NUMBER: _ClassVar[int]
    TARGET_OUTPUT_FIELD_NUMBER: _ClassVar[int]
    DIVERGENCE_FIELD_NUMBER: _ClassVar[int]
    DIVERGENCE_TYPE_FIELD_NUMBER: _ClassVar[int]
    TOKENS_FIELD_NUMBER: _ClassVar[int]
    NEXT_TOKENS_FIELD_NUMBER: _ClassVar[int]
    TARGET_NEXT_TOKENS_FIELD_NUMBER: _ClassVar[int]
    POSITION_DIVERGENCE_FIELD_NUMBER: _ClassVar[int]
    outputs: _tensor_pb2.Tensor
    target_output: _tensor_pb2.Tensor
    divergence: _tensor_pb2.Tensor
    divergence_type: Divergence
    tokens: Tokens
    next_tokens: _containers.RepeatedCompositeFieldContainer[NextTokens]
    target_next_tokens: NextTokens
    position_divergence: _tensor_pb2.Tensor
    def __init__(self, outputs: _Optional[_Union[_tensor_pb2.Tensor, _Mapping]] = ..., target_output: _Optional[_Union[_tensor_pb2.Tensor, _Mapping]] = ..., divergence: _Optional[_Union[_tensor_pb2.Tensor, _Mapping]] = ..., divergence_type: _Optional[_Union[Divergence, str]] = ..., tokens: _Optional[_Union[Tokens, _Mapping]] = ..., next_tokens: _Optional[_Iterable[_Union[NextTokens, _Mapping]]] = ..., target_next_tokens: _Optional[_Union[NextTokens, _Mapping]] = ..., position_divergence: _Optional[_Union[_tensor_pb2.Tensor, _Mapping]] = ...) -> None: ...

class GetComponentsRequest(_message.Message):
    __slots__ = ("decomposition", "module", "components")
    DECOMPOSITION_FIELD_NUMBER: _ClassVar[int]
    MODULE_FIELD_NUMBER: _ClassVar[int]
    COMPONENTS_FIELD_NUMBER: _ClassVar[int]
    decomposition: str
    module: str
    components: _containers.RepeatedScalarFieldContainer[int]
    def __init__(self, decomposition: _Optional[str] = ..., module: _Optional[str] = ..., components: _Optional[_Iterable[int]] = ...) -> None: ...

class GetComponentsResponse(_message.Message):
    __slots__ = ("components", "u", "v")
    COMPONENTS_FIELD_NUMBER: _ClassVar[int]
    U_FIELD_NUMBER: _ClassVar[int]
    V_FIELD_NUMBER: _ClassVar[int]
    components: _tensor_pb2.Tensor
    u: _tensor_pb2.Tensor
    v: _tensor_pb2.Tensor
    def __init__(self, components: _Optional[_Union[_tensor_pb2.Tensor, _Mapping]] = ..., u: _Optional[_Union[_tensor_pb2.Tensor, _Mapping]] = ..., v: _Optional[_Union[_tensor_pb2.Tensor, _Mapping]] = ...) -> None: ...

class GetComponentContextsRequest(_message.Message):
    __slots__ = ("decomposition", "module", "component", "k", "n_windows")
    DECOMPOSITION_FIELD_NUMBER: _ClassVar[int]
    MODULE_FIELD_NUMBER: _ClassVar[int]
    COMPONENT_FIELD_NUMBER: _ClassVar[int]
    K_FIELD_NUMBER: _ClassVar[int]
    N_WINDOWS_FIELD_NUMBER: _ClassVar[int]
    decomposition: str
    module: str
    component: int
    k: int
    n_windows: int
    def __init__(self, decomposition: _Optional[str] = ..., module: _Optional[str] = ..., component: _Optional[int] = ..., k: _Optional[int] = ..., n_windows: _Optional[int] = ...) -> None: ...

class ComponentContext(_message.Message):
    __slots__ = ("importance", "window", "position", "token", "before", "after")
    IMPORTANCE_FIELD_NUMBER: _ClassVar[int]
    WINDOW_FIELD_NUMBER: _ClassVar[int]
    POSITION_FIELD_NUMBER: _ClassVar[int]
    TOKEN_FIELD_NUMBER: _ClassVar[int]
    BEFORE_FIELD_NUMBER: _ClassVar[int]
    AFTER_FIELD_NUMBER: _ClassVar[int]
    importance: float
    window: int
    position: int
    token: str
    before: str
    after: str
    def __init__(self, importance: _Optional[float] = ..., window: _Optional[int] = ..., position: _Optional[int] = ..., token: _Optional[str] = ..., before: _Optional[str] = ..., after: _Optional[str] = ...) -> None: ...

class GetComponentContextsResponse(_message.Message):
    __slots__ = ("corpus", "n_windows", "contexts", "from_harvest")
    CORPUS_FIELD_NUMBER: _ClassVar[int]
    N_WINDOWS_FIELD_NUMBER: _ClassVar[int]
    CONTEXTS_FIELD_NUMBER: _ClassVar[int]
    FROM_HARVEST_FIELD_NUMBER: _ClassVar[int]
    corpus: str
    n_windows: int
    contexts: _containers.RepeatedCompositeFieldContainer[ComponentContext]
    from_harvest: bool
    def __init__(self, corpus: _Optional[str] = ..., n_windows: _Optional[int] = ..., contexts: _Optional[_Iterable[_Union[ComponentContext, _Mapping]]] = ..., from_harvest: _Optional[bool] = ...) -> None: ...

class ComputeAttributionsRequest(_message.Message):
    __slots__ = ("decomposition", "inputs", "text", "token_ids", "source_modules", "target_modules", "positions", "output", "logit_index", "threshold", "max_edges", "min_abs_attribution", "edges_per_chunk")
    DECOMPOSITION_FIELD_NUMBER: _ClassVar[int]
    INPUTS_FIELD_NUMBER: _ClassVar[int]
    TEXT_FIELD_NUMBER: _ClassVar[int]
    TOKEN_IDS_FIELD_NUMBER: _ClassVar[int]
    SOURCE_MODULES_FIELD_NUMBER: _ClassVar[int]
    TARGET_MODULES_FIELD_NUMBER: _ClassVar[int]
    POSITIONS_FIELD_NUMBER: _ClassVar[int]
    OUTPUT_FIELD_NUMBER: _ClassVar[int]
    LOGIT_INDEX_FIELD_NUMBER: _ClassVar[int]
    THRESHOLD_FIELD_NUMBER: _ClassVar[int]
    MAX_EDGES_FIELD_NUMBER: _ClassVar[int]
    MIN_ABS_ATTRIBUTION_FIELD_NUMBER: _ClassVar[int]
    EDGES_PER_CHUNK_FIELD_NUMBER: _ClassVar[int]
    decomposition: str
    inputs: _tensor_pb2.Tensor
    text: str
    token_ids: TokenIds
    source_modules: _containers.RepeatedScalarFieldContainer[str]
    target_modules: _containers.RepeatedScalarFieldContainer[str]
    positions: _containers.RepeatedScalarFieldContainer[int]
    output: AttributionOutput
    logit_index: int
    threshold: float
    max_edges: int
    min_abs_attribution: float
    edges_per_chunk: int
    def __init__(self, decomposition: _Optional[str] = ..., inputs: _Optional[_Union[_tensor_pb2.Tensor, _Mapping]] = ..., text: _Optional[str] = ..., token_ids: _Optional[_Union[TokenIds, _Mapping]] = ..., source_modules: _Optional[_Iterable[str]] = ..., target_modules: _Optional[_Iterable[str]] = ..., positions: _Optional[_Iterable[int]] = ..., output: _Optional[_Union[AttributionOutput, str]] = ..., logit_index: _Optional[int] = ..., threshold: _Optional[float] = ..., max_edges: _Optional[int] = ..., min_abs_attribution: _Optional[float] = ..., edges_per_chunk: _Optional[int] = ...) -> None: ...

class AttributionNode(_message.Message):
    __slots__ = ("module", "component", "max_ci", "active_positions", "is_output")
    MODULE_FIELD_NUMBER: _ClassVar[int]
    COMPONENT_FIELD_NUMBER: _ClassVar[int]
    MAX_CI_FIELD_NUMBER: _ClassVar[int]
    ACTIVE_POSITIONS_FIELD_NUMBER: _ClassVar[int]
    IS_OUTPUT_FIELD_NUMBER: _ClassVar[int]
    module: str
    component: int
    max_ci: float
    active_positions: int
    is_output: bool
    def __init__(self, module: _Optional[str] = ..., component: _Optional[int] = ..., max_ci: _Optional[float] = ..., active_positions: _Optional[int] = ..., is_output: _Optional[bool] = ...) -> None: ...

class AttributionHeader(_message.Message):
    __slots__ = ("nodes", "module_order", "positions", "threshold", "candidate_edges", "edges", "tokens", "output")
    NODES_FIELD_NUMBER: _ClassVar[int]
    MODULE_ORDER_FIELD_NUMBER: _ClassVar[int]
    POSITIONS_FIELD_NUMBER: _ClassVar[int]
    THRESHOLD_FIELD_NUMBER: _ClassVar[int]
    CANDIDATE_EDGES_FIELD_NUMBER: _ClassVar[int]
    EDGES_FIELD_NUMBER: _ClassVar[int]
    TOKENS_FIELD_NUMBER: _ClassVar[int]
    OUTPUT_FIELD_NUMBER: _ClassVar[int]
    nodes: _containers.RepeatedCompositeFieldContainer[AttributionNode]
    module_order: _containers.RepeatedScalarFieldContainer[str]
    positions: _containers.RepeatedScalarFieldContainer[int]
    threshold: float
    candidate_edges: int
    edges: int
    tokens: Tokens
    output: AttributionOutput
    def __init__(self, nodes: _Optional[_Iterable[_Union[AttributionNode, _Mapping]]] = ..., module_order: _Optional[_Iterable[str]] = ..., positions: _Optional[_Iterable[int]] = ..., threshold: _Optional[float] = ..., candidate_edges: _Optional[int] = ..., edges: _Optional[int] = ..., tokens: _Optional[_Union[Tokens, _Mapping]] = ..., output: _Optional[_Union[AttributionOutput, str]] = ...) -> None: ...

class AttributionChunk(_message.Message):
    __slots__ = ("header", "sources", "targets", "attributions")
    HEADER_FIELD_NUMBER: _ClassVar[int]
    SOURCES_FIELD_NUMBER: _ClassVar[int]
    TARGETS_FIELD_NUMBER: _ClassVar[int]
    ATTRIBUTIONS_FIELD_NUMBER: _ClassVar[int]
    header: AttributionHeader
    sources: _tensor_pb2.Tensor
    targets: _tensor_pb2.Tensor
    attributions: _tensor_pb2.Tensor
    def __init__(self, header: _Optional[_Union[AttributionHeader, _Mapping]] = ..., sources: _Optional[_Union[_tensor_pb2.Tensor, _Mapping]] = ..., targets: _Optional[_Union[_tensor_pb2.Tensor, _Mapping]] = ..., attributions: _Optional[_Union[_tensor_pb2.Tensor, _Mapping]] = ...) -> None: ...
