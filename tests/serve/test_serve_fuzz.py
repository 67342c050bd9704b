"""Property-based fuzzing of every RPC on a live server: structured random requests (every field,
extreme shapes and dtypes, NaN/Inf, huge counts, unknown names) and raw random bytes never get
INTERNAL or UNKNOWN, never carry a traceback, and leave the server answering as before.

Bounded: EXAMPLES requests per RPC (Hypothesis's `ci` profile derandomizes them on CI)."""

from __future__ import annotations

from collections import Counter

import grpc
import numpy as np
import pytest
from google.protobuf.message import Message
from grpc_health.v1 import health_pb2
from hypothesis import HealthCheck, given, settings
from hypothesis import strategies as st

from services.serving.wire import SERVICES
from spd_client.generated.spd.v1 import decomposition_service_pb2 as pb
from spd_client.generated.spd.v1 import harvest_pb2 as hpb
from spd_client.generated.spd.v1 import tensor_pb2
from spd_client.tensor_codec import to_proto
from tests.serve.conftest import LIMITS, TOKEN

pytestmark = pytest.mark.ray
EXAMPLES = 100
AUTH = (("authorization", f"Bearer {TOKEN}"),)
INT64 = st.integers(-(2**63), 2**63 - 1)
INT32 = st.integers(-(2**31), 2**31 - 1)
COUNTS = st.one_of(st.integers(-3, 70), st.sampled_from([2**31, 2**62, 2**63 - 1, -(2**63)]))
FLOATS = st.floats(allow_nan=True, allow_infinity=True)


def mostly(usual: st.SearchStrategy, anything: st.SearchStrategy) -> st.SearchStrategy:
    """`usual` five times in six, so that many requests pass the first checks and go deeper."""
    return st.integers(0, 5).flatmap(lambda i: usual if i else anything)


NAMES = mostly(
    st.sampled_from(["tms-5-2", "tms-5-2-id"]),
    st.one_of(st.sampled_from(["", "nope", "tms-5-2 ", "../etc"]), st.text()),
)
MODULE = mostly(st.sampled_from(["linear1", "linear2"]), st.text(max_size=10))
MODULES = mostly(st.just([]), st.lists(MODULE, max_size=3))
INDICES = st.lists(mostly(st.integers(0, 19), st.one_of(st.integers(-2, 25), INT64)), max_size=6)
SERVICE_NAMES = mostly(st.sampled_from(["", "spd.v1.DecompositionService"]), st.text())
NO_TEXT = mostly(st.just(""), st.text(max_size=50))
NO_TOKENS = mostly(st.none(), st.lists(INT64, max_size=8).map(lambda i: pb.TokenIds(ids=i)))


@st.composite
def tensors(draw) -> tensor_pb2.Tensor:
    """Mostly a well-formed (N, 5) float32 batch (any N, finite or not), else any shape, dtype
    and bytes."""
    if draw(st.integers(0, 3)):
        n = draw(mostly(st.integers(1, 8), st.integers(0, LIMITS["max_stream_inputs"] + 2)))
        values = draw(
            mostly(
                st.lists(st.floats(-10, 10, width=32), min_size=1, max_size=8),
                st.lists(FLOATS, min_size=1, max_size=8),
            )
        )
        return to_proto(np.resize(np.asarray(values, np.float32), (n, 5)))
    return tensor_pb2.Tensor(
        shape=draw(st.lists(st.one_of(st.integers(-2, 70), INT64), max_size=5)),
        dtype=draw(st.one_of(st.integers(-1, 7), INT32)),
        data=draw(st.binary(max_size=512)),
    )


def _selection() -> st.SearchStrategy[pb.Selection]:
    return st.one_of(
        st.none(),
        st.just(pb.Selection(dense=pb.Dense())),
        COUNTS.map(lambda k: pb.Selection(top_k=pb.TopK(k=k))),
        FLOATS.map(lambda v: pb.Selection(threshold=pb.Threshold(value=v))),
    )


def _importances() -> st.SearchStrategy[pb.ComputeImportancesRequest]:
    return st.builds(
        pb.ComputeImportancesRequest,
        decomposition=NAMES,
        inputs=mostly(tensors(), st.none()),
        selection=_selection(),
        kind=mostly(st.integers(0, 2), INT32),
        modules=MODULES,
        text=NO_TEXT,
        token_ids=NO_TOKENS,
    )


REQUESTS: dict[str, st.SearchStrategy[Message]] = {
    "ListDecompositions": st.just(pb.ListDecompositionsRequest()),
    "GetDecomposition": st.builds(pb.GetDecompositionRequest, name=NAMES),
    "ComputeImportances": _importances(),
    "StreamImportances": st.builds(
        pb.StreamImportancesRequest, request=_importances(), chunk_size=COUNTS
    ),
    "Ablate": st.builds(
        pb.AblateRequest,
        decomposition=NAMES,
        inputs=mostly(tensors(), st.none()),
        modules=MODULES,
        mode=mostly(st.integers(1, 5), st.one_of(st.integers(-1, 6), INT32)),
        components=mostly(
            st.just({}),
            st.dictionaries(
                MODULE, INDICES.map(lambda i: pb.ComponentIndices(indices=i)), max_size=2
            ),
        ),
        use_delta=st.booleans(),
        n_samples=mostly(st.integers(0, 4), COUNTS),
        seed=INT64,
        rounding_threshold=mostly(st.floats(0, 1), FLOATS),
        divergence=mostly(st.integers(0, 2), INT32),
        text=NO_TEXT,
        token_ids=NO_TOKENS,
        top_k_tokens=COUNTS,
    ),
    "GetComponents": st.builds(
        pb.GetComponentsRequest,
        decomposition=NAMES,
        module=MODULE,
        components=mostly(INDICES.filter(bool), INDICES),
    ),
    "GetComponentContexts": st.builds(
        pb.GetComponentContextsRequest,
        decomposition=NAMES,
        module=MODULE,
        component=INT64,
        k=COUNTS,
        n_windows=COUNTS,
    ),
    "ComputeAttributions": st.builds(
        pb.ComputeAttributionsRequest,
        decomposition=NAMES,
        inputs=mostly(tensors(), st.none()),
        text=NO_TEXT,
        token_ids=NO_TOKENS,
        source_modules=MODULES,
        target_modules=MODULES,
        positions=mostly(st.just([]), INDICES),
        output=mostly(st.integers(0, 3), INT32),
        logit_index=mostly(st.integers(0, 5), INT64),
        threshold=mostly(st.none(), FLOATS),
        max_edges=COUNTS,
        min_abs_attribution=mostly(st.floats(0, 1), FLOATS),
        edges_per_chunk=COUNTS,
    ),
    "ListComponents": st.builds(
        hpb.ListComponentsRequest,
        decomposition=NAMES,
        module=mostly(st.none(), MODULE),
        order=mostly(st.integers(0, 2), INT32),
        page_size=COUNTS,
        page_token=mostly(st.just(""), st.text(max_size=40)),
    ),
    "GetComponentSummary": st.builds(
        hpb.GetComponentSummaryRequest, decomposition=NAMES, module=MODULE, component=INT64
    ),
    "Check": st.builds(health_pb2.HealthCheckRequest, service=SERVICE_NAMES),
    "List": st.just(health_pb2.HealthListRequest()),
    "Watch": st.builds(health_pb2.HealthCheckRequest, service=SERVICE_NAMES),
}
METHODS = {m.name: (s, m) for s in SERVICES for m in s.methods}
BROKEN = {grpc.StatusCode.INTERNAL, grpc.StatusCode.UNKNOWN}
TRACEBACK_MARKS = ("Traceback", 'File "', "\n  ")
X = np.linspace(0.0, 1.0, 10, dtype=np.float32).reshape(2, 5)


def _call(channel: grpc.Channel, rpc: str, payload: bytes, metadata) -> tuple[grpc.StatusCode, str]:
    service, method = METHODS[rpc]
    path = f"/{service.full_name}/{method.name}"
    try:
        if method.server_streaming:
            list(channel.unary_stream(path)(payload, metadata=metadata, timeout=60))
        else:
            channel.unary_unary(path)(payload, metadata=metadata, timeout=60)
    except grpc.RpcError as err:
        return err.code(), err.details() or ""
    return grpc.StatusCode.OK, ""


def _importances_of_x(channel: grpc.Channel) -> bytes:
    request = pb.ComputeImportancesRequest(decomposition="tms-5-2", inputs=to_proto(X))
    return channel.unary_unary("/spd.v1.DecompositionService/ComputeImportances")(
        request.SerializeToString(), metadata=AUTH, timeout=60
    )


@pytest.fixture(scope="module")
def channel(server):
    with grpc.insecure_channel(server) as ch:
        yield ch


@pytest.fixture(scope="module")
def before(channel) -> bytes:
    """The server's answer to one good request before any fuzzing."""
    return _importances_of_x(channel)


def test_every_rpc_of_every_service_is_fuzzed():
    assert set(REQUESTS) == set(METHODS)


@pytest.mark.parametrize("rpc", list(REQUESTS))
def test_random_requests_get_a_deliberate_status_and_leave_the_server_serving(channel, before, rpc):
    seen: Counter[str] = Counter()

    @settings(
        max_examples=EXAMPLES,
        deadline=None,
        database=None,
        suppress_health_check=[HealthCheck.too_slow, HealthCheck.data_too_large],
    )
    @given(
        payload=mostly(REQUESTS[rpc].map(lambda m: m.SerializeToString()), st.binary()),
        with_token=st.sampled_from([True, True, True, False]),
    )
    def fuzz(payload: bytes, with_token: bool) -> None:
        code, details = _call(channel, rpc, payload, AUTH if with_token else ())
        seen[code.name] += 1
        assert code not in BROKEN, f"{rpc} answered {code.name}: {details!r}"
        assert not any(mark in details for mark in TRACEBACK_MARKS), details

    fuzz()
    print(f"\n{rpc}: {sum(seen.values())} requests, statuses {dict(sorted(seen.items()))}")
    assert _importances_of_x(channel) == before  # and it still answers exactly as before
