"""Bearer-token check on a call's metadata (`authorization: Bearer <token>`)."""

from __future__ import annotations

import hmac
from collections.abc import Iterable

from services.serving.errors import unauthenticated

TOKEN_ENV = "SPD_SERVE_TOKEN"  # where servers read their token when none is passed


def check_bearer(metadata: Iterable[tuple[str, str | bytes]], token: str | None) -> None:
    """Nothing when no token is configured or the call carries it; else UNAUTHENTICATED."""
    if not token:
        return
    values = [v for k, v in metadata if k.lower() == "authorization"]
    if not values:
        raise unauthenticated(
            "this server requires a token: send metadata 'authorization: Bearer <token>'"
        )
    value = values[0].decode() if isinstance(values[0], bytes) else values[0]
    scheme, _, given = value.partition(" ")
    if scheme.lower() != "bearer" or not hmac.compare_digest(
        given.strip().encode(), token.encode()
    ):
        raise unauthenticated("the authorization token is not valid for this server")
