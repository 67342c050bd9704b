"""On the wire: bytes that are not the RPC's message get INVALID_ARGUMENT naming the type, on
every RPC; the standard health service answers a standard client without a token; reflection
lists every service."""

from __future__ import annotations

import grpc
import pytest
from google.protobuf.descriptor_pool import DescriptorPool
from grpc_health.v1 import health_pb2, health_pb2_grpc
from grpc_reflection.v1alpha.proto_reflection_descriptor_database import (
    ProtoReflectionDescriptorDatabase,
)

from services.serving.wire import SERVICES
from tests.serve.conftest import TOKEN

pytestmark = pytest.mark.ray
AUTH = [("authorization", f"Bearer {TOKEN}")]
NOT_A_MESSAGE = b"\xff\xff\xff\xff"  # a field header whose varint never ends
METHODS = [(s, m) for s in SERVICES for m in s.methods]


@pytest.fixture(scope="module")
def channel(server):
    with grpc.insecure_channel(server) as ch:
        yield ch


def _raw_call(channel: grpc.Channel, service, method, payload: bytes, metadata=AUTH) -> None:
    path = f"/{service.full_name}/{method.name}"
    if method.server_streaming:
        list(channel.unary_stream(path)(payload, metadata=metadata, timeout=30))
    else:
        channel.unary_unary(path)(payload, metadata=metadata, timeout=30)


@pytest.mark.parametrize(("service", "method"), METHODS, ids=[m.full_name for _, m in METHODS])
def test_bytes_that_do_not_parse_get_invalid_argument_naming_the_type(channel, service, method):
    with pytest.raises(grpc.RpcError) as info:
        _raw_call(channel, service, method, NOT_A_MESSAGE)
    expected = method.input_type.full_name
    assert info.value.code() == grpc.StatusCode.INVALID_ARGUMENT, info.value.details()
    assert info.value.details() == (
        f"the request bytes do not parse as a {expected} message; send a serialized "
        f"{expected} (the stubs in spd_client.generated do)"
    )


def test_a_standard_health_client_sees_serving_without_a_token(channel):
    health = health_pb2_grpc.HealthStub(channel)
    for service in ("", "spd.v1.DecompositionService", "grpc.health.v1.Health"):
        answer = health.Check(health_pb2.HealthCheckRequest(service=service), timeout=30)
        assert answer.status == health_pb2.HealthCheckResponse.SERVING, service
    with pytest.raises(grpc.RpcError) as info:
        health.Check(health_pb2.HealthCheckRequest(service="spd.v2.Nope"), timeout=30)
    assert info.value.code() == grpc.StatusCode.NOT_FOUND
    assert "'spd.v2.Nope'" in info.value.details()
    with pytest.raises(grpc.RpcError) as info:
        list(health.Watch(health_pb2.HealthCheckRequest(), timeout=30))
    assert info.value.code() == grpc.StatusCode.UNIMPLEMENTED
    assert "poll Check" in info.value.details()


def test_reflection_lists_and_describes_every_service(channel):
    database = ProtoReflectionDescriptorDatabase(channel)
    assert set(database.get_services()) == {
        "spd.v1.DecompositionService",
        "grpc.health.v1.Health",
        "grpc.reflection.v1alpha.ServerReflection",
    }
    pool = DescriptorPool(database)
    ablate = pool.FindServiceByName("spd.v1.DecompositionService").FindMethodByName("Ablate")
    assert ablate.input_type.full_name == "spd.v1.AblateRequest"
    check = pool.FindServiceByName("grpc.health.v1.Health").FindMethodByName("Check")
    assert check.output_type.full_name == "grpc.health.v1.HealthCheckResponse"
