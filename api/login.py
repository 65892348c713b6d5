"""Login over HTTP: the credentials of a request, checked against the studio's users.

Every /api/v1 and /v1 route (and /metrics, /docs) depends on `api_user`: with login on, a
request needs HTTP Basic credentials, or NAME:PASSWORD as the bearer token (what an OpenAI
client sends as its api_key). The name lands on request.state for `request_user`.
"""

from __future__ import annotations

import base64
import binascii
from collections.abc import Callable

from fastapi.security.utils import get_authorization_scheme_param
from starlette.requests import Request

from core.errors import Unauthorized
from core.operations.auth import Authenticator, acting_user

OPEN_ROUTES = ("/api/v1/health",)  # reachable without credentials (monitoring)


def api_user(auth: Authenticator) -> Callable[[Request], str | None]:
    """The FastAPI dependency that checks a request's credentials: the name, or None."""

    def user(request: Request) -> str | None:
        if not auth.enabled or request.url.path in OPEN_ROUTES:
            return None
        scheme, encoded = get_authorization_scheme_param(request.headers.get("Authorization"))
        name, password = _basic(scheme, encoded) if scheme.lower() == "basic" else _bearer(
            scheme, encoded
        )
        if name is None or not auth.verify(name, password):
            raise Unauthorized(
                "log in: send HTTP Basic credentials of a Refinery user, or NAME:PASSWORD as "
                "the bearer token (an OpenAI client's api_key)"
            )
        request.state.user = name
        return name

    return user


def _basic(scheme: str, encoded: str) -> tuple[str | None, str]:
    if scheme.lower() != "basic" or not encoded:
        return None, ""
    try:
        name, sep, password = base64.b64decode(encoded, validate=True).decode().partition(":")
    except (binascii.Error, UnicodeDecodeError, ValueError):
        return None, ""
    return (name, password) if sep else (None, "")


def _bearer(scheme: str, token: str) -> tuple[str | None, str]:
    """OpenAI clients send their api_key as a bearer token: here a user's NAME:PASSWORD."""
    if scheme.lower() != "bearer" or not token:
        return None, ""
    name, sep, password = token.partition(":")
    return (name, password) if sep else (None, "")


def request_user(request: Request, claimed: str | None) -> str:
    """acting_user for a FastAPI request (the dependency put the name on request.state)."""
    return acting_user(getattr(request.state, "user", None), claimed)
