"""How the deployment turns failures into gRPC statuses (pure logic, no Serve running)."""

from __future__ import annotations

import grpc

from services.serving.deployment import _set_status
from services.serving.errors import not_found


class RecordingContext:
    """Records what the deployment sets on a call's context."""

    def __init__(self) -> None:
        self.code: grpc.StatusCode | None = None
        self.details: str | None = None

    def set_code(self, code: grpc.StatusCode) -> None:
        self.code = code

    def set_details(self, details: str) -> None:
        self.details = details


def test_refusals_keep_their_code_and_message():
    context = RecordingContext()
    _set_status(context, not_found("no decomposition named 'x'"), "GetDecomposition")
    assert (context.code, context.details) == (
        grpc.StatusCode.NOT_FOUND,
        "no decomposition named 'x'",
    )


def test_unexpected_failures_are_internal_without_their_text():
    context = RecordingContext()
    _set_status(context, KeyError("/secret/path.zarr"), "Ablate")
    assert context.code == grpc.StatusCode.INTERNAL
    assert context.details == "internal error in Ablate (KeyError); the server log has the details"
