"""Limits with clear messages: upload size, prompt length, max new tokens (flags and env too),
and the generation queue: beyond --max-queue waiting requests the API answers 429 busy."""

from __future__ import annotations

import threading

import pytest

from core.errors import Busy
from core.serving.admission import Admission
from core.settings import parse_settings
from tests.conftest import LOCAL
from tests.training_helpers import wait_for

LIMITS = dict(max_prompt_chars=50, max_new_tokens_limit=8, max_upload_bytes=1000, max_queue=1)


def test_limits_are_flags_and_environment_variables():
    flags = parse_settings(["--max-upload-mb", "2", "--max-prompt-chars", "100",
                            "--max-new-tokens", "64", "--max-queue", "3"], {})
    assert (flags.max_upload_bytes, flags.max_prompt_chars, flags.max_new_tokens_limit,
            flags.max_queue) == (2 * 1024 * 1024, 100, 64, 3)
    env = parse_settings([], {"REFINERY_MAX_UPLOAD_MB": "0.5", "REFINERY_MAX_QUEUE": "7",
                              "REFINERY_MAX_PROMPT_CHARS": "9", "REFINERY_MAX_NEW_TOKENS": "5"})
    assert (env.max_upload_bytes, env.max_queue, env.max_prompt_chars,
            env.max_new_tokens_limit) == (512 * 1024, 7, 9, 5)
    with pytest.raises(ValueError, match="max_queue"):
        parse_settings(["--max-queue", "0"], {})


@pytest.fixture
def limited(tmp_path, tiny_model_dir):
    from fastapi.testclient import TestClient

    from app import create_app
    from core.services import build_services
    from core.settings import Settings

    services = build_services(Settings(data_dir=tmp_path / "data", model=str(tiny_model_dir),
                                       default_max_new_tokens=2, **LIMITS))
    with TestClient(create_app(services), base_url=LOCAL) as client:
        yield services, client
    services.close()


def test_prompt_and_token_limits_answer_400_with_the_limit(limited):
    _, client = limited
    long_prompt = {"prompt": "x" * 51, "max_new_tokens": 2}
    for url, extra in (("/api/v1/chat", {}), ("/api/v1/chat", {"stream": True}),
                       ("/api/v1/compare", {"model_b": "base+fewshot"})):
        response = client.post(url, json={**long_prompt, **extra})
        assert response.status_code == 400, (url, response.text)
        assert response.json()["error"] == "the prompt has 51 characters; the limit is 50"
        response = client.post(url, json={"prompt": "hi", "max_new_tokens": 9, **extra})
        assert response.status_code == 400
        assert response.json()["error"] == "max_new_tokens is 9; the limit is 8"
    history = [{"role": "user", "content": "y" * 501}]
    response = client.post("/api/v1/chat", json={"prompt": "hi", "history": history,
                                                 "max_new_tokens": 2})
    assert response.status_code == 400 and "the limit is 500" in response.json()["error"]


def test_uploads_over_the_limit_are_refused_with_the_limit(limited):
    services, client = limited
    big = ("word " * 300).encode()  # 1,500 bytes
    response = client.post("/api/v1/documents", files=[("files", ("big.txt", big, "text/plain")),
                                                       ("files", ("ok.txt", b"hello there",
                                                                  "text/plain"))])
    assert response.status_code == 200
    results = {r["name"]: r for r in response.json()["results"]}
    assert not results["big.txt"]["ok"] and "1,000 bytes" in results["big.txt"]["reason"]
    assert results["ok.txt"]["ok"]  # one bad file stops no other
    rows = b"\n".join(b'{"prompt": "q%d", "response": "%s"}' % (i, b"a" * 40) for i in range(30))
    response = client.post("/api/v1/datasets/import",
                           files={"file": ("rows.jsonl", rows, "application/json")})
    assert response.status_code == 400
    assert response.json()["error"] == "the file is larger than the upload limit of 1,000 bytes"


def test_gradio_queue_has_a_maximum_size(limited):
    services, client = limited
    mounted = [r.app for r in client.app.routes if hasattr(getattr(r, "app", None), "get_blocks")]
    assert mounted and mounted[0].get_blocks()._queue.max_size == services.settings.max_queue


def test_a_full_queue_answers_429_busy_and_the_queued_requests_finish(limited):
    services, client = limited
    answers: list = []

    def ask() -> None:
        answers.append(client.post("/api/v1/chat", json={"prompt": "hi", "max_new_tokens": 2}))

    services.models.get()
    with services.models.use_lock:  # the model is busy: requests wait behind it
        waiting = [threading.Thread(target=ask) for _ in range(2)]  # one generating + one queued
        for thread in waiting:
            thread.start()
        wait_for(lambda: services.admission.queued == 1 and services.admission._in_flight == 2)
        refused = client.post("/api/v1/chat", json={"prompt": "hi", "max_new_tokens": 2})
        streamed = client.post("/api/v1/chat", json={"prompt": "hi", "stream": True,
                                                      "max_new_tokens": 2})
        compared = client.post("/api/v1/compare", json={"prompt": "hi", "model_b": "base+fewshot",
                                                        "max_new_tokens": 2})
    for response in (refused, streamed, compared):
        assert response.status_code == 429, response.text
        assert response.json() == {
            "error": "busy",
            "detail": "the model is busy: 1 requests are queued; try again shortly",
        }
    for thread in waiting:
        thread.join()
    assert [a.status_code for a in answers] == [200, 200]
    assert services.admission._in_flight == 0


def test_admission_counts_places_and_frees_them():
    gate = Admission(2)
    for _ in range(3):
        gate.enter()
    assert gate.queued == 2
    with pytest.raises(Busy) as caught:
        gate.enter()
    assert "2 requests are queued" in caught.value.detail
    with pytest.raises(Busy):
        gate.check()
    gate.leave()
    with gate.slot():
        assert gate.queued == 2
    assert gate.queued == 1
    with pytest.raises(ValueError):
        Admission(0)
