"""The same-origin rule for every route (REST and Gradio): one ASGI middleware.

A web page in the user's browser can send "simple" cross-site requests (form posts need no
preflight) to the loopback studio, and DNS rebinding lets a foreign name reach it. So:

- the Host header must name an allowed host (the bound host, localhost, 127.0.0.1, [::1] and
  --allowed-hosts);
- a state-changing request (POST, PUT, PATCH, DELETE, or a websocket) that carries an Origin
  (or, without one, a Referer) must come from the host it is sent to.

Requests with neither header (curl, SDKs, gradio_client) are not from a browser page and pass.
"""

from __future__ import annotations

import json
from urllib.parse import urlsplit

LOCAL_HOSTS = ("localhost", "127.0.0.1", "::1")
STATE_CHANGING = {"POST", "PUT", "PATCH", "DELETE"}


def _split_host(value: str) -> tuple[str, int | None] | None:
    """(hostname, explicit port) of a Host header value or a URL netloc; None when malformed."""
    try:
        parts = urlsplit(f"http://{value}")
        name, port = parts.hostname, parts.port
    except ValueError:
        return None
    if not name or parts.path or parts.query or parts.username is not None:
        return None
    return name.lower().rstrip("."), port


def _origin(value: str) -> tuple[str, int | None] | None:
    try:
        parts = urlsplit(value)
    except ValueError:
        return None
    if parts.scheme not in ("http", "https") or not parts.netloc:
        return None  # "null" (sandboxed frames, file://) and anything odd is foreign
    return _split_host(parts.netloc)


class SameOrigin:
    """ASGI middleware: 403 JSON for foreign hosts and cross-origin state changes."""

    def __init__(self, app, *, allowed_hosts: tuple[str, ...] = ()) -> None:
        self.app = app
        self.hosts = {h.strip().lower().strip("[]").rstrip(".") for h in (*LOCAL_HOSTS,
                                                                         *allowed_hosts)}
        self.hosts.discard("")

    async def __call__(self, scope, receive, send) -> None:
        if scope["type"] not in ("http", "websocket"):
            return await self.app(scope, receive, send)
        problem = self.problem(scope)
        if problem is None:
            return await self.app(scope, receive, send)
        if scope["type"] == "websocket":
            return await send({"type": "websocket.close", "code": 1008})
        body = json.dumps({"error": problem, "detail": None}).encode()
        await send({"type": "http.response.start", "status": 403,
                    "headers": [(b"content-type", b"application/json"),
                                (b"content-length", str(len(body)).encode())]})
        await send({"type": "http.response.body", "body": body})

    def problem(self, scope) -> str | None:
        headers = {k.decode("latin-1").lower(): v.decode("latin-1")
                   for k, v in scope.get("headers", ())}
        host = _split_host(headers.get("host", ""))
        if host is None or host[0] not in self.hosts:
            return ("this studio does not answer to that host name; "
                    "add it with --allowed-hosts (REFINERY_ALLOWED_HOSTS) if it is yours")
        changing = scope["type"] == "websocket" or scope.get("method") in STATE_CHANGING
        claimed = headers.get("origin") or headers.get("referer")
        if not changing or claimed is None:
            return None
        # Browsers leave default ports out of both headers, so explicit ports compare as given
        if _origin(claimed) != host:
            return "cross-origin request refused: send it from the studio's own page"
        return None
