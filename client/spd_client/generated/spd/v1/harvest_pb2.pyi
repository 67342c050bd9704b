from google.protobuf.internal import containers as _containers
from google.protobuf.internal import enum_type_wrapper as _enum_type_wrapper
from google.protobuf import descriptor as _descriptor
from google.protobuf import message as _message
from collections.abc import Iterable as _Iterable, Mapping as _Mapping
from typing import ClassVar as _ClassVar, Optional as _Optional, Union as _Union

DESCRIPTOR: _descriptor.FileDescriptor

class ComponentOrder(int, metaclass=_enum_type_wrapper.EnumTypeWrapper):
    __slots__ = ()
    COMPONENT_ORDER_UNSPECIFIED: _ClassVar[ComponentOrder]
    COMPONENT_ORDER_FREQUENCY: _ClassVar[ComponentOrder]
    COMPONENT_ORDER_MEAN_CI: _ClassVar[ComponentOrder]

class LabelStatus(int, metaclass=_enum_type_wrapper.EnumTypeWrapper):
    __slots__ = ()
    LABEL_STATUS_UNSPECIFIED: _ClassVar[LabelStatus]
    LABEL_STATUS_LABELLED: _ClassVar[LabelStatus]
    LABEL_STATUS_UNPARSED: _ClassVar[LabelStatus]
COMPONENT_ORDER_UNSPECIFIED: ComponentOrder
COMPONENT_ORDER_FREQUENCY: ComponentOrder
COMPONENT_ORDER_MEAN_CI: ComponentOrder
LABEL_STATUS_UNSPECIFIED: LabelStatus
LABEL_STATUS_LABELLED: LabelStatus
LABEL_STATUS_UNPARSED: LabelStatus

class ListComponentsRequest(_message.Message):
    __slots__ = ("decomposition", "module", "order", "page_size", "page_token", "label_contains")
    DECOMPOSITION_FIELD_NUMBER: _ClassVar[int]
    MODULE_FIELD_NUMBER: _ClassVar[int]
    ORDER_FIELD_NUMBER: _ClassVar[int]
    PAGE_SIZE_FIELD_NUMBER: _ClassVar[int]
    PAGE_TOKEN_FIELD_NUMBER: _ClassVar[int]
    LABEL_CONTAINS_FIELD_NUMBER: _ClassVar[int]
    decomposition: str
    module: str
    order: ComponentOrder
    page_size: int
    page_token: str
    label_contains: str
    def __init__(self, decomposition: _Optional[str] = ..., module: _Optional[str] = ..., order: _Optional[_Union[ComponentOrder, str]] = ..., page_size: _Optional[int] = ..., page_token: _Optional[str] = ..., label_contains: _Optional[str] = ...) -> None: ...

class ComponentInterpretation(_message.Message):
    __slots__ = ("token_summary", "status", "label", "explanation", "detection_score", "detection_control", "explainer_model")
    TOKEN_SUMMARY_FIELD_NUMBER: _ClassVar[int]
    STATUS_FIELD_NUMBER: _ClassVar[int]
    LABEL_FIELD_NUMBER: _ClassVar[int]
    EXPLANATION_FIELD_NUMBER: _ClassVar[int]
    DETECTION_SCORE_FIELD_NUMBER: _ClassVar[int]
    DETECTION_CONTROL_FIELD_NUMBER: _ClassVar[int]
    EXPLAINER_MODEL_FIELD_NUMBER: _ClassVar[int]
    token_summary: str
    status: LabelStatus
    label: str
    explanation: str
    detection_score: float
    detection_control: float
    explainer_model: str
    def __init__(self, token_summary: _Optional[str] = ..., status: _Optional[_Union[LabelStatus, str]] = ..., label: _Optional[str] = ..., explanation: _Optional[str] = ..., detection_score: _Optional[float] = ..., detection_control: _Optional[float] = ..., explainer_model: _Optional[str] = ...) -> None: ...

class ComponentStats(_message.Message):
    __slots__ = ("module", "component", "firing_count", "firing_frequency", "mean_ci_when_firing", "interpretation")
    MODULE_FIELD_NUMBER: _ClassVar[int]
    COMPONENT_FIELD_NUMBER: _ClassVar[int]
    FIRING_COUNT_FIELD_NUMBER: _ClassVar[int]
    FIRING_FREQUENCY_FIELD_NUMBER: _ClassVar[int]
    MEAN_CI_WHEN_FIRING_FIELD_NUMBER: _ClassVar[int]
    INTERPRETATION_FIELD_NUMBER: _ClassVar[int]
    module: str
    component: int
    firing_count: int
    firing_frequency: float
    mean_ci_when_firing: float
    interpretation: ComponentInterpretation
    def __init__(self, module: _Optional[str] = ..., component: _Optional[int] = ..., firing_count: _Optional[int] = ..., firing_frequency: _Optional[float] = ..., mean_ci_when_firing: _Optional[float] = ..., interpretation: _Optional[_Union[ComponentInterpretation, _Mapping]] = ...) -> None: ...

class ListComponentsResponse(_message.Message):
    __slots__ = ("components", "next_page_token", "total_size")
    COMPONENTS_FIELD_NUMBER: _ClassVar[int]
    NEXT_PAGE_TOKEN_FIELD_NUMBER: _ClassVar[int]
    TOTAL_SIZE_FIELD_NUMBER: _ClassVar[int]
    components: _containers.RepeatedCompositeFieldContainer[ComponentStats]
    next_page_token: str
    total_size: int
    def __init__(self, components: _Optional[_Iterable[_Union[ComponentStats, _Mapping]]] = ..., next_page_token: _Optional[str] = ..., total_size: _Optional[int] = ...) -> None: ...

class GetComponentSummaryRequest(_message.Message):
    __slots__ = ("decomposition", "module", "component")
    DECOMPOSITION_FIELD_NUMBER: _ClassVar[int]
    MODULE_FIELD_NUMBER: _ClassVar[int]
    COMPONENT_FIELD_NUMBER: _ClassVar[int]
    decomposition: str
    module: str
    component: int
    def __init__(self, decomposition: _Optional[str] = ..., module: _Optional[str] = ..., component: _Optional[int] = ...) -> None: ...

class TopExample(_message.Message):
    __slots__ = ("importance", "input", "position", "token", "before", "after")
    IMPORTANCE_FIELD_NUMBER: _ClassVar[int]
    INPUT_FIELD_NUMBER: _ClassVar[int]
    POSITION_FIELD_NUMBER: _ClassVar[int]
    TOKEN_FIELD_NUMBER: _ClassVar[int]
    BEFORE_FIELD_NUMBER: _ClassVar[int]
    AFTER_FIELD_NUMBER: _ClassVar[int]
    importance: float
    input: int
    position: int
    token: str
    before: str
    after: str
    def __init__(self, importance: _Optional[float] = ..., input: _Optional[int] = ..., position: _Optional[int] = ..., token: _Optional[str] = ..., before: _Optional[str] = ..., after: _Optional[str] = ...) -> None: ...

class CoactiveComponent(_message.Message):
    __slots__ = ("module", "component", "count")
    MODULE_FIELD_NUMBER: _ClassVar[int]
    COMPONENT_FIELD_NUMBER: _ClassVar[int]
    COUNT_FIELD_NUMBER: _ClassVar[int]
    module: str
    component: int
    count: int
    def __init__(self, module: _Optional[str] = ..., component: _Optional[int] = ..., count: _Optional[int] = ...) -> None: ...

class TokenStat(_message.Message):
    __slots__ = ("token_id", "token", "precision", "recall", "count")
    TOKEN_ID_FIELD_NUMBER: _ClassVar[int]
    TOKEN_FIELD_NUMBER: _ClassVar[int]
    PRECISION_FIELD_NUMBER: _ClassVar[int]
    RECALL_FIELD_NUMBER: _ClassVar[int]
    COUNT_FIELD_NUMBER: _ClassVar[int]
    token_id: int
    token: str
    precision: float
    recall: float
    count: int
    def __init__(self, token_id: _Optional[int] = ..., token: _Optional[str] = ..., precision: _Optional[float] = ..., recall: _Optional[float] = ..., count: _Optional[int] = ...) -> None: ...

class LogitChange(_message.Message):
    __slots__ = ("token_id", "token", "change")
    TOKEN_ID_FIELD_NUMBER: _ClassVar[int]
    TOKEN_FIELD_NUMBER: _ClassVar[int]
    CHANGE_FIELD_NUMBER: _ClassVar[int]
    token_id: int
    token: str
    change: float
    def __init__(self, token_id: _Optional[int] = ..., token: _Optional[str] = ..., change: _Optional[float] = ...) -> None: ...

class GetComponentSummaryResponse(_message.Message):
    __slots__ = ("stats", "n_positions", "threshold", "bin_edges", "histogram", "top_examples", "coactive_within_module", "coactive_across_modules", "tokens_by_precision", "tokens_by_recall", "logits_up", "logits_down", "n_inputs")
    STATS_FIELD_NUMBER: _ClassVar[int]
    N_POSITIONS_FIELD_NUMBER: _ClassVar[int]
    THRESHOLD_FIELD_NUMBER: _ClassVar[int]
    BIN_EDGES_FIELD_NUMBER: _ClassVar[int]
    HISTOGRAM_FIELD_NUMBER: _ClassVar[int]
    TOP_EXAMPLES_FIELD_NUMBER: _ClassVar[int]
    COACTIVE_WITHIN_MODULE_FIELD_NUMBER: _ClassVar[int]
    COACTIVE_ACROSS_MODULES_FIELD_NUMBER: _ClassVar[int]
    TOKENS_BY_PRECISION_FIELD_NUMBER: _ClassVar[int]
    TOKENS_BY_RECALL_FIELD_NUMBER: _ClassVar[int]
    LOGITS_UP_FIELD_NUMBER: _ClassVar[int]
    LOGITS_DOWN_FIELD_NUMBER: _ClassVar[int]
    N_INPUTS_FIELD_NUMBER: _ClassVar[int]
    stats: ComponentStats
    n_positions: int
    threshold: float
    bin_edges: _containers.RepeatedScalarFieldContainer[float]
    histogram: _containers.RepeatedScalarFieldContainer[int]
    top_examples: _containers.RepeatedCompositeFieldContainer[TopExample]
    coactive_within_module: _containers.RepeatedCompositeFieldContainer[CoactiveComponent]
    coactive_across_modules: _containers.RepeatedCompositeFieldContainer[CoactiveComponent]
    tokens_by_precision: _containers.RepeatedCompositeFieldContainer[TokenStat]
    tokens_by_recall: _containers.RepeatedCompositeFieldContainer[TokenStat]
    logits_up: _containers.RepeatedCompositeFieldContainer[LogitChange]
    logits_down: _containers.RepeatedCompositeFieldContainer[LogitChange]
    n_inputs: int
    def __init__(self, stats: _Optional[_Union[ComponentStats, _Mapping]] = ..., n_positions: _Optional[int] = ..., threshold: _Optional[float] = ..., bin_edges: _Optional[_Iterable[float]] = ..., histogram: _Optional[_Iterable[int]] = ..., top_examples: _Optional[_Iterable[_Union[TopExample, _Mapping]]] = ..., coactive_within_module: _Optional[_Iterable[_Union[CoactiveComponent, _Mapping]]] = ..., coactive_across_modules: _Optional[_Iterable[_Union[CoactiveComponent, _Mapping]]] = ..., tokens_by_precision: _Optional[_Iterable[_Union[TokenStat, _Mapping]]] = ..., tokens_by_recall: _Optional[_Iterable[_Union[TokenStat, _Mapping]]] = ..., logits_up: _Optional[_Iterable[_Union[LogitChange, _Mapping]]] = ..., logits_down: _Optional[_Iterable[_Union[LogitChange, _Mapping]]] = ..., n_inputs: _Optional[int] = ...) -> None: ...
