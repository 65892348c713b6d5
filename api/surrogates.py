"""A lone UTF-16 surrogate ("\\ud800" in JSON) is not text: refuse it (400) at the door.

JSON may escape half of a surrogate pair on its own; Python then holds a string that cannot be
encoded, and the first tokenizer, database or log line that touches it fails with a 500. One
ASGI middleware checks every JSON request body (REST and Gradio alike) before any route runs.
"""

from __future__ import annotations

import json
import re

# A cheap pre-check: only bodies with a surrogate escape are parsed here
SURROGATE_ESCAPE = re.compile(rb"\\u[dD][89a-fA-F][0-9a-fA-F]{2}")


def has_lone_surrogate(body: bytes) -> bool:
    if not SURROGATE_ESCAPE.search(body):
        return False
    try:
        value = json.loads(body)
    except ValueError:
        return False  # not JSON at all: the route answers that
    try:  # pairs were joined into one character by the parser; what is left is alone
        json.dumps(value, ensure_ascii=False).encode("utf-8")
    except UnicodeEncodeError:
        return True
    return False


class RefuseLoneSurrogates:
    def __init__(self, app) -> None:
        self.app = app

    async def __call__(self, scope, receive, send) -> None:
        if scope["type"] != "http" or not _is_json(scope):
            return await self.app(scope, receive, send)
        chunks, more = [], True
        while more:
            message = await receive()
            if message["type"] != "http.request":
                return await self.app(scope, _replay([message], receive), send)
            chunks.append(message)
            more = message.get("more_body", False)
        if has_lone_surrogate(b"".join(m.get("body", b"") for m in chunks)):
            body = json.dumps({"error": "the text contains a lone UTF-16 surrogate "
                                        "(half of an emoji or other character): send valid "
                                        "Unicode", "detail": None}).encode()
            await send({"type": "http.response.start", "status": 400,
                        "headers": [(b"content-type", b"application/json"),
                                    (b"content-length", str(len(body)).encode())]})
            return await send({"type": "http.response.body", "body": body})
        await self.app(scope, _replay(chunks, receive), send)


def _is_json(scope) -> bool:
    for key, value in scope.get("headers", ()):
        if key.lower() == b"content-type":
            return b"json" in value.lower()
    return False


def _replay(messages: list[dict], receive):
    pending = list(messages)

    async def replay():
        return pending.pop(0) if pending else await receive()

    return replay
