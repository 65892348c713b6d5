"""Calling the UI's Gradio endpoints over HTTP as any client could: /gradio_api/call/<name>."""

from __future__ import annotations

import json


def gradio_call(client, api_name: str, data: list) -> tuple[str, object]:
    """(event, payload) of one call: event is "complete" or "error"."""
    started = client.post(f"/gradio_api/call/{api_name.lstrip('/')}", json={"data": data})
    assert started.status_code == 200, started.text
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


def file_inputs(endpoint: dict) -> list[int]:
    return [i for i, p in enumerate(endpoint["parameters"]) if p["component"] in
            ("File", "Uploadedfile", "UploadedFile", "UploadButton", "Image", "Audio", "Video")]
