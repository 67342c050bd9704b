"""Every refused request gets its precise status and an actionable message, never a traceback,
and the service keeps answering afterwards; a token-protected server refuses calls without it."""

from __future__ import annotations

import grpc
import numpy as np
import pytest

from spd_client import Client
from spd_client.generated.spd.v1 import decomposition_service_pb2 as pb
from spd_client.generated.spd.v1 import decomposition_service_pb2_grpc as pb_grpc
from spd_client.generated.spd.v1 import tensor_pb2
from spd_client.tensor_codec import to_proto
from tests.serve.conftest import TOKEN

pytestmark = pytest.mark.ray
X = np.full((2, 5), 0.5, dtype=np.float32)
AUTH = [("authorization", f"Bearer {TOKEN}")]


def _importances(**fields) -> pb.ComputeImportancesRequest:
    return pb.ComputeImportancesRequest(
        **{"decomposition": "tms-5-2", "inputs": to_proto(X), **fields}
    )


def _ablate(**fields) -> pb.AblateRequest:
    base = {"decomposition": "tms-5-2", "inputs": to_proto(X), "mode": pb.MASK_MODE_ABLATE}
    return pb.AblateRequest(**{**base, **fields})


def _nan() -> np.ndarray:
    x = X.copy()
    x[1, 3] = np.nan
    return x


CODE = grpc.StatusCode
CASES = {
    "unknown decomposition": (
        "ComputeImportances",
        _importances(decomposition="nope"),
        CODE.NOT_FOUND,
        "tms-5-2-id",
    ),
    "unknown module": (
        "ComputeImportances",
        _importances(modules=["linear9"]),
        CODE.NOT_FOUND,
        "linear1, linear2",
    ),
    "wrong dtype": (
        "ComputeImportances",
        _importances(inputs=to_proto(X.astype(np.float64))),
        CODE.INVALID_ARGUMENT,
        "takes float32",
    ),
    "wrong shape": (
        "ComputeImportances",
        _importances(inputs=to_proto(X[:, :4])),
        CODE.INVALID_ARGUMENT,
        "expected ['N', 5]",
    ),
    "NaN input": (
        "ComputeImportances",
        _importances(inputs=to_proto(_nan())),
        CODE.INVALID_ARGUMENT,
        "first at input 1",
    ),
    "Inf input": (
        "Ablate",
        _ablate(inputs=to_proto(np.full((1, 5), np.inf, np.float32))),
        CODE.INVALID_ARGUMENT,
        "NaN or Inf",
    ),
    "missing inputs": (
        "ComputeImportances",
        pb.ComputeImportancesRequest(decomposition="tms-5-2"),
        CODE.INVALID_ARGUMENT,
        "inputs are missing",
    ),
    "empty inputs": (
        "ComputeImportances",
        _importances(inputs=to_proto(X[:0])),
        CODE.INVALID_ARGUMENT,
        "N = 0",
    ),
    "truncated bytes": (
        "ComputeImportances",
        _importances(inputs=tensor_pb2.Tensor(shape=[2, 5], dtype=1, data=b"\0" * 12)),
        CODE.INVALID_ARGUMENT,
        "needs 40",
    ),
    "too many inputs": (
        "ComputeImportances",
        _importances(inputs=to_proto(np.zeros((65, 5), np.float32))),
        CODE.RESOURCE_EXHAUSTED,
        "use StreamImportances",
    ),
    "top_k zero": (
        "ComputeImportances",
        _importances(selection=pb.Selection(top_k=pb.TopK(k=0))),
        CODE.INVALID_ARGUMENT,
        "k must be >= 1",
    ),
    "mode missing": (
        "Ablate",
        _ablate(mode=pb.MASK_MODE_UNSPECIFIED),
        CODE.INVALID_ARGUMENT,
        "MASK_MODE_KEEP",
    ),
    "unknown component": (
        "Ablate",
        _ablate(components={"linear1": pb.ComponentIndices(indices=[20])}),
        CODE.NOT_FOUND,
        "C = 20 (0..19)",
    ),
    "components with CI mode": (
        "Ablate",
        _ablate(mode=pb.MASK_MODE_CI, components={"linear1": pb.ComponentIndices()}),
        CODE.INVALID_ARGUMENT,
        "only used with",
    ),
    "listed module not replaced": (
        "Ablate",
        _ablate(modules=["linear2"], components={"linear1": pb.ComponentIndices()}),
        CODE.INVALID_ARGUMENT,
        "add it to modules",
    ),
    "too many samples": (
        "Ablate",
        _ablate(mode=pb.MASK_MODE_STOCHASTIC, n_samples=5),
        CODE.RESOURCE_EXHAUSTED,
        "limit of 4",
    ),
    "samples without stochastic": (
        "Ablate",
        _ablate(n_samples=2),
        CODE.INVALID_ARGUMENT,
        "MASK_MODE_STOCHASTIC",
    ),
    "unknown decomposition (describe)": (
        "GetDecomposition",
        pb.GetDecompositionRequest(name="x"),
        CODE.NOT_FOUND,
        "serves",
    ),
    "component out of range": (
        "GetComponents",
        pb.GetComponentsRequest(decomposition="tms-5-2", module="linear1", components=[-1]),
        CODE.NOT_FOUND,
        "no component -1",
    ),
    "too many components": (
        "GetComponents",
        pb.GetComponentsRequest(decomposition="tms-5-2", module="linear1"),
        CODE.RESOURCE_EXHAUSTED,
        "limit of 8",
    ),
}


@pytest.fixture(scope="module")
def stub(server):
    with grpc.insecure_channel(server) as channel:
        yield pb_grpc.DecompositionServiceStub(channel)


@pytest.mark.parametrize("case", list(CASES))
def test_bad_request_gets_precise_status_and_message(stub, case):
    method, request, code, fragment = CASES[case]
    with pytest.raises(grpc.RpcError) as info:
        getattr(stub, method)(request, metadata=AUTH, timeout=30)
    assert info.value.code() == code, info.value.details()
    assert fragment in info.value.details()
    assert "Traceback" not in info.value.details()


def test_stream_refusals_carry_their_status(stub):
    too_many = pb.StreamImportancesRequest(
        request=_importances(inputs=to_proto(np.zeros((257, 5), np.float32)))
    )
    bad_dtype = pb.StreamImportancesRequest(
        request=_importances(inputs=to_proto(X.astype(np.int64)))
    )
    for request, code in [(too_many, CODE.RESOURCE_EXHAUSTED), (bad_dtype, CODE.INVALID_ARGUMENT)]:
        with pytest.raises(grpc.RpcError) as info:
            list(stub.StreamImportances(request, metadata=AUTH, timeout=30))
        assert info.value.code() == code, info.value.details()
        assert "Traceback" not in info.value.details()


def test_service_keeps_serving_after_refusals(stub, client):
    for method, request, _, _ in CASES.values():
        with pytest.raises(grpc.RpcError):
            getattr(stub, method)(request, metadata=AUTH, timeout=30)
    ci = client.compute_importances("tms-5-2", X)
    assert ci["linear1"].values.shape == (2, 20)


@pytest.mark.parametrize("token", [None, "wrong-token"])
def test_calls_without_the_token_are_unauthenticated(server, token):
    with Client(server, token=token) as anonymous:
        calls = [
            anonymous.list_decompositions,
            lambda: anonymous.compute_importances("tms-5-2", X),
            lambda: list(anonymous.stream_importances("tms-5-2", X)),
            lambda: anonymous.ablate("tms-5-2", X, "ci"),
        ]
        for call in calls:
            with pytest.raises(grpc.RpcError) as info:
                call()
            assert info.value.code() == CODE.UNAUTHENTICATED
            assert "Bearer" in info.value.details() or "not valid" in info.value.details()
