"""Failed-login throttling for both doors: the REST API's HTTP Basic and Gradio's /login.

One ASGI middleware sees every attempt: it reads the user name (the Basic header, or the login
form), refuses with 429 + Retry-After while that name or that client is locked, and learns the
outcome from the response (401 on the API, 400 on /login = a failure; success clears both).
After FREE failures in a row, each further failure locks for twice as long, up to MAX_LOCK_S.
"""

from __future__ import annotations

import base64
import binascii
import json
import math
import threading
import time
from collections.abc import Callable
from dataclasses import dataclass, field
from urllib.parse import parse_qs

FREE = 5  # failures allowed before any delay (typos)
FIRST_LOCK_S = 1.0
MAX_LOCK_S = 15 * 60.0
MAX_KEYS = 10_000  # remembered names and clients; the oldest are forgotten first
LOGIN_PATHS = ("/login", "/login/")
MAX_FORM_BYTES = 64 * 1024


@dataclass
class LoginThrottle:
    clock: Callable[[], float] = time.monotonic
    _failures: dict[str, tuple[int, float]] = field(default_factory=dict)  # key -> (n, until)
    _lock: threading.Lock = field(default_factory=threading.Lock)

    def retry_after(self, keys: list[str]) -> float:
        """Seconds until these keys may try again (0: now)."""
        now = self.clock()
        with self._lock:
            return max([self._failures.get(k, (0, now))[1] - now for k in keys] + [0.0])

    def failed(self, keys: list[str]) -> None:
        now = self.clock()
        with self._lock:
            for key in keys:
                count = self._failures.pop(key, (0, 0.0))[0] + 1
                lock = 0.0 if count <= FREE else min(FIRST_LOCK_S * 2 ** (count - FREE - 1),
                                                     MAX_LOCK_S)
                self._failures[key] = (count, now + lock)
            while len(self._failures) > MAX_KEYS:
                del self._failures[next(iter(self._failures))]

    def succeeded(self, keys: list[str]) -> None:
        with self._lock:
            for key in keys:
                self._failures.pop(key, None)


def _basic_name(headers: dict[str, str]) -> str | None:
    scheme, _, encoded = headers.get("authorization", "").partition(" ")
    if scheme.lower() != "basic" or not encoded:
        return None
    try:
        name, sep, _ = base64.b64decode(encoded.strip(), validate=True).decode().partition(":")
    except (binascii.Error, UnicodeDecodeError, ValueError):
        return None
    return name if sep else None


class ThrottleLogins:
    """ASGI middleware around the whole app (API and UI)."""

    def __init__(self, app, *, throttle: LoginThrottle, api_prefix: str = "/api/") -> None:
        self.app, self.throttle, self.api_prefix = app, throttle, api_prefix

    async def __call__(self, scope, receive, send) -> None:
        if scope["type"] != "http":
            return await self.app(scope, receive, send)
        headers = {k.decode("latin-1").lower(): v.decode("latin-1")
                   for k, v in scope.get("headers", ())}
        path = scope.get("path", "")
        if path in LOGIN_PATHS and scope.get("method") == "POST":
            name, receive = await self._form_name(receive)
            failure = 400
        elif path.startswith(self.api_prefix) and (name := _basic_name(headers)) is not None:
            failure = 401
        else:
            return await self.app(scope, receive, send)
        client = (scope.get("client") or ("unknown", 0))[0]
        keys = [f"client\0{client}"] + ([f"name\0{name.strip()}"] if name is not None else [])
        wait = self.throttle.retry_after(keys)
        if wait > 0:
            return await _too_many(send, wait)
        status: list[int] = []

        async def watch(message) -> None:
            if message["type"] == "http.response.start":
                status.append(message["status"])
            await send(message)

        await self.app(scope, receive, watch)
        if status and status[0] == failure:
            self.throttle.failed(keys)
        elif status and status[0] < 300:
            self.throttle.succeeded(keys)

    async def _form_name(self, receive):
        """The username of a login form, and a receive that replays the body."""
        chunks, size, more = [], 0, True
        while more and size <= MAX_FORM_BYTES:
            message = await receive()
            if message["type"] != "http.request":
                return None, receive
            chunks.append(message.get("body", b""))
            size += len(chunks[-1])
            more = message.get("more_body", False)
        body, replayed = b"".join(chunks), False

        async def replay():
            nonlocal replayed
            if not replayed:
                replayed = True
                return {"type": "http.request", "body": body, "more_body": more}
            return await receive()

        try:
            name = parse_qs(body.decode(), max_num_fields=20).get("username", [None])[0]
        except (UnicodeDecodeError, ValueError):
            name = None
        return name, replay


async def _too_many(send, wait: float) -> None:
    seconds = max(1, math.ceil(wait))
    body = json.dumps({"error": f"too many failed logins: try again in {seconds} s",
                       "detail": {"retry_after": seconds}}).encode()
    await send({"type": "http.response.start", "status": 429,
                "headers": [(b"content-type", b"application/json"),
                            (b"retry-after", str(seconds).encode()),
                            (b"content-length", str(len(body)).encode())]})
    await send({"type": "http.response.body", "body": body})
