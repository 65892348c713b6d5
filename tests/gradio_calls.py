"""Calling the UI's Gradio endpoints over HTTP as any client could: /gradio_api/call/<name>."""

from __future__ import annotations

import json


def gradio_call(client, api_name: str, data: list) -> tuple[str, object]:
    """(event, payload) of one call: event is "complete" or "error" (or "refused" with the
    JSON error when the request itself is refused)."""
    started = client.post(f"/gradio_api/call/{api_name.lstrip('/')}", json={"data": data})
    if started.status_code != 200:
        return "refused", started.json()
    event_id = started.json()["event_id"]
    stream = client.get(f"/gradio_api/call/{api_name.lstrip('/')}/{event_id}")
    event, payload = "", None
    for line in stream.text.splitlines():
        if line.startswith("event: "):
            event = line.removeprefix("event: ")
        elif line.startswith("data: ") and event in ("complete", "error"):
            payload = json.loads(line.removeprefix("data: "))
            return event, payload
    return event, payload


def endpoints(client) -> dict[str, dict]:
    """The UI's named endpoints as Gradio describes them."""
    return client.get("/gradio_api/info").json()["named_endpoints"]
