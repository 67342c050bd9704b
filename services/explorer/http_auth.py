"""Who may use the explorer over HTTP: with a server token, a request carries
`Authorization: Bearer <token>` (scripts) or the session cookie the login page sets (browsers).
The cookie holds a keyed hash of the token, never the token; every comparison is constant-time."""

from __future__ import annotations

import hashlib
import hmac

from starlette.requests import Request

COOKIE = "spd_session"
OPEN_PATHS = frozenset({"/healthz", "/login"})
"""Routes that answer without the token: the health check and the login page."""


def session_value(token: str) -> str:
    """The cookie's value for `token` (it reveals nothing of the token)."""
    return hmac.new(token.encode(), b"spd explorer session", hashlib.sha256).hexdigest()


def _equal(given: str, expected: str) -> bool:
    return hmac.compare_digest(given.encode(), expected.encode())


def authorized(request: Request, token: str | None) -> bool:
    """True when the server has no token or the request carries it (header or cookie)."""
    if not token:
        return True
    scheme, _, given = request.headers.get("authorization", "").partition(" ")
    if scheme.lower() == "bearer" and _equal(given.strip(), token):
        return True
    return _equal(request.cookies.get(COOKIE, ""), session_value(token))


def token_matches(given: str, token: str) -> bool:
    """The login form's check."""
    return _equal(given, token)
