"""The OpenAI-compatible API, driven by the official openai client against the app served live by
uvicorn on a loopback port: completions (plain and streamed) are logged turns that can be rated,
the model list, refusals in OpenAI's error shape, login and the 429 queue."""

from __future__ import annotations

import base64
import threading
from contextlib import contextmanager

import httpx
import openai
import pytest

from core.serving.stop_sequences import visible_text
from tests.e2e.served import free_port
from tests.tiny_adapters import make_tiny_adapter
from tests.training_helpers import wait_for

ASK = [{"role": "user", "content": "What is the capital of France?"}]


@contextmanager
def live(services):
    """create_app(services) served by uvicorn in a thread; yields the base URL."""
    import uvicorn

    from app import create_app

    port = free_port()
    config = uvicorn.Config(create_app(services), host="127.0.0.1", port=port, log_level="warning")
    server = uvicorn.Server(config)
    thread = threading.Thread(target=server.run, daemon=True)
    thread.start()
    try:
        wait_for(lambda: server.started or not thread.is_alive(), every=0.05)
        assert server.started, "uvicorn did not start"
        yield f"http://127.0.0.1:{port}"
    finally:
        server.should_exit = True
        thread.join()


@contextmanager
def live_app(data_dir, model_dir, **settings):
    """A studio on the tiny model (reference engine) served live; yields (services, url)."""
    from core.services import build_services
    from core.settings import Settings

    built = build_services(Settings(data_dir=data_dir, model=str(model_dir),
                                    engine="transformers", **settings))
    try:
        with live(built) as url:
            yield built, url
    finally:
        built.close()


def client_for(url: str, api_key: str = "unused") -> openai.OpenAI:
    return openai.OpenAI(base_url=f"{url}/v1", api_key=api_key, max_retries=0)


@pytest.fixture(scope="module")
def served(tmp_path_factory, tiny_model_dir):
    """One live app for the tests below that need no settings of their own."""
    data = tmp_path_factory.mktemp("openai") / "data"
    with live_app(data, tiny_model_dir, default_max_new_tokens=8) as served_app:
        yield served_app


def turn_count(url: str) -> int:
    return httpx.get(f"{url}/api/v1/interactions", timeout=60).json()["total"]


def logged(url: str, response_id: str, **params) -> dict | None:
    """The turn as GET /api/v1/interactions lists it."""
    reply = httpx.get(f"{url}/api/v1/interactions", params=params, timeout=60)
    assert reply.status_code == 200, reply.text
    return {row["response_id"]: row for row in reply.json()["items"]}.get(response_id)


def test_a_completion_is_a_logged_turn_that_can_be_rated(served):
    services, url = served
    client = client_for(url)
    raw = client.chat.completions.with_raw_response.create(
        model="auto", max_tokens=6, temperature=0,
        messages=[{"role": "system", "content": "Answer briefly."},
                  {"role": "user", "content": "Hello"},
                  {"role": "assistant", "content": "Hi!"}, *ASK],
    )  # fmt: skip
    completion = raw.parse()
    response_id = raw.headers["x-refinery-response-id"]
    assert completion.id == f"chatcmpl-{response_id}"
    assert completion.model_extra["refinery_response_id"] == response_id
    choice = completion.choices[0]
    assert choice.message.role == "assistant" and choice.finish_reason in ("stop", "length")
    assert 1 <= completion.usage.completion_tokens <= 6
    assert completion.usage.total_tokens == (
        completion.usage.prompt_tokens + completion.usage.completion_tokens
    )

    assert logged(url, response_id)["response"] == choice.message.content
    turn = services.log.get_turn(response_id)
    assert turn["prompt"] == ASK[0]["content"]
    settings = turn["settings"]
    assert settings["system_prompt"] == "Answer briefly."
    assert settings["temperature"] == 0 and settings["max_new_tokens"] == 6
    assert [m["role"] for m in turn["context"]] == ["system", "user", "assistant", "user"]

    rated = httpx.post(f"{url}/api/v1/feedback", timeout=60,
                       json={"response_id": response_id, "rating": 5, "thumb": "up"})
    assert rated.status_code == 200, rated.text
    assert logged(url, response_id, rated=True)["rating"] == 5


def test_a_streamed_completion_arrives_in_chunks_and_is_logged_whole(served):
    services, url = served
    raw = client_for(url).chat.completions.with_raw_response.create(
        model="base", messages=ASK, max_completion_tokens=8, temperature=0, stream=True,
        stream_options={"include_usage": True},
    )
    response_id = raw.headers["x-refinery-response-id"]
    chunks = list(raw.parse())
    assert {chunk.id for chunk in chunks} == {f"chatcmpl-{response_id}"}
    assert chunks[0].choices[0].delta.role == "assistant"
    text = "".join(c.choices[0].delta.content or "" for c in chunks if c.choices)
    finishes = [c.choices[0].finish_reason for c in chunks if c.choices]
    assert finishes[-1] in ("stop", "length") and not any(finishes[:-1])
    final = next(c for c in chunks if c.choices and c.choices[0].finish_reason)
    assert final.model_extra["refinery"]["response_id"] == response_id
    assert chunks[-1].choices == [] and 1 <= chunks[-1].usage.completion_tokens <= 8

    assert logged(url, response_id)["response"] == text
    assert services.log.get_turn(response_id)["settings"]["max_new_tokens"] == 8


def test_logprobs_are_returned_when_asked_plain_and_streamed(served):
    services, url = served
    client = client_for(url)
    ask = dict(model="base", messages=ASK, max_tokens=8, temperature=0, logprobs=True)
    completion = client.chat.completions.create(**ask)
    choice = completion.choices[0]
    entries = choice.logprobs.content
    assert entries and "".join(e.token for e in entries) == choice.message.content
    assert all(e.logprob <= 0 and e.bytes == list(e.token.encode()) for e in entries)
    confidence = completion.model_extra["refinery"]["confidence"]
    assert sum(e.logprob for e in entries) / len(entries) == pytest.approx(confidence, abs=1e-4)
    chunks = list(client.chat.completions.create(**ask, stream=True))
    streamed = [e for c in chunks if c.choices and c.choices[0].logprobs
                for e in c.choices[0].logprobs.content]  # fmt: skip
    assert [(e.token, round(e.logprob, 4)) for e in streamed] == [
        (e.token, round(e.logprob, 4)) for e in entries
    ]
    unasked = client.chat.completions.create(model="base", messages=ASK, max_tokens=4)
    assert unasked.choices[0].logprobs is None
    # a stop sequence cuts the log-probabilities with the text
    stop = choice.message.content[2:4]
    cut = client.chat.completions.create(**ask, stop=stop).choices[0]
    assert "".join(e.token for e in cut.logprobs.content).startswith(cut.message.content)
    assert len(cut.logprobs.content) < len(entries)


def test_repetition_penalty_is_honoured_as_vllm_names_it(served):
    services, url = served
    completion = client_for(url).chat.completions.create(
        model="base", messages=ASK, max_tokens=2, extra_body={"repetition_penalty": 1.3}
    )
    turn = services.log.get_turn(completion.model_extra["refinery_response_id"])
    assert turn["settings"]["repetition_penalty"] == 1.3
    with pytest.raises(openai.BadRequestError):
        client_for(url).chat.completions.create(
            model="base", messages=ASK, extra_body={"repetition_penalty": 5}
        )


def test_without_sampling_values_the_served_model_defaults_apply(served):
    services, url = served
    completion = client_for(url).chat.completions.create(model="base", messages=ASK)
    defaults = services.defaults.get()
    settings = services.log.get_turn(completion.model_extra["refinery_response_id"])["settings"]
    assert (settings["temperature"], settings["top_p"], settings["max_new_tokens"]) == (
        defaults.temperature, defaults.top_p, defaults.max_new_tokens
    )


def test_a_stop_sequence_ends_the_answer_before_it(served):
    services, url = served
    client = client_for(url)
    ask = dict(model="base", messages=ASK, max_tokens=24, temperature=0)
    full = client.chat.completions.create(**ask).choices[0].message.content
    assert len(full) >= 6, full  # greedy and deterministic: the same answer again below
    stop = full[3:5]
    cut = full[: full.find(stop)]
    plain = client.chat.completions.create(**ask, stop=stop)
    assert plain.choices[0].message.content == cut
    assert plain.choices[0].finish_reason == "stop"
    streamed = client.chat.completions.create(**ask, stop=[stop, "never-seen"], stream=True)
    chunks = list(streamed)
    assert "".join(c.choices[0].delta.content or "" for c in chunks if c.choices) == cut
    assert logged(url, chunks[0].model_extra["refinery_response_id"])["response"] == cut


def test_visible_text_holds_back_what_may_become_a_stop_sequence():
    assert visible_text("Paris.\n", ["\n\n"]) == ("Paris.", False)
    assert visible_text("Paris.\nLyon", ["\n\n"]) == ("Paris.\nLyon", False)
    assert visible_text("Paris.\n\nLyon", ["\n\n", "Lyon"]) == ("Paris.", True)
    assert visible_text("Paris", []) == ("Paris", False)


def test_models_lists_every_name_chat_accepts_and_each_answers(served, tiny_model_dir, tmp_path):
    services, url = served
    adapter = make_tiny_adapter(tiny_model_dir, tmp_path / "adapter")

    services.registry.register(
        model_id="tuned-1", name="tuned", base_model=services.models.name, adapter_dir=adapter,
        job_id=None, config={}, dataset_id=None, dataset_version=None, metrics={},
        duration_s=None, lineage={},
    )  # fmt: skip
    client = client_for(url)
    ids = [model.id for model in client.models.list()]
    assert ids == ["auto", "base", services.models.name, "tuned-1"]
    for name in ids:
        completion = client.chat.completions.create(model=name, messages=ASK, max_tokens=2)
        assert completion.model == name
        adapter_version = completion.model_extra["refinery"]["adapter_version"]
        assert adapter_version == ("tuned-1" if name == "tuned-1" else None)


@pytest.mark.parametrize(
    ("extra", "param"),
    [
        ({"n": 2}, "n"),
        ({"tools": [{"type": "function", "function": {"name": "f", "parameters": {}}}]}, "tools"),
        ({"logprobs": True, "top_logprobs": 2}, "top_logprobs"),
        ({"response_format": {"type": "json_object"}}, "response_format"),
        ({"frequency_penalty": 0.5}, "frequency_penalty"),
    ],
)
def test_unsupported_parameters_are_refused_in_openai_error_shape(served, extra, param):
    services, url = served
    before = turn_count(url)
    with pytest.raises(openai.BadRequestError) as refused:
        client_for(url).chat.completions.create(model="base", messages=ASK, **extra)
    error = refused.value.body
    assert refused.value.status_code == 400
    assert error["code"] == "unsupported_parameter" and error["param"] == param
    assert error["type"] == "invalid_request_error" and error["message"]
    assert turn_count(url) == before  # nothing was generated or logged


def test_bad_values_and_unknown_models_are_openai_errors(served):
    services, url = served
    client = client_for(url)
    with pytest.raises(openai.NotFoundError) as missing:
        client.chat.completions.create(model="nope", messages=ASK)
    assert missing.value.body["code"] == "model_not_found" and "nope" in missing.value.message
    limit = services.settings.max_new_tokens_limit
    for bad in ({"temperature": 5}, {"max_tokens": limit + 1}, {"stop": ["a"] * 5}):
        with pytest.raises(openai.BadRequestError) as refused:
            client.chat.completions.create(model="base", messages=ASK, **bad)
        assert refused.value.body["type"] == "invalid_request_error"
    for messages in ([{"role": "assistant", "content": "hi"}], [{"role": "tool", "content": "x",
                                                                "tool_call_id": "1"}]):
        with pytest.raises(openai.BadRequestError):
            client.chat.completions.create(model="base", messages=messages)
    reply = httpx.post(f"{url}/v1/chat/completions", json={"messages": ASK}, timeout=60)
    assert reply.status_code == 400 and "model" in reply.json()["error"]["message"]


def test_text_content_parts_are_read_and_images_refused(served):
    services, url = served
    client = client_for(url)
    parts = [{"type": "text", "text": "What is the capital "}, {"type": "text", "text": "of Peru?"}]
    completion = client.chat.completions.create(
        model="base", max_tokens=2, messages=[{"role": "user", "content": parts}]
    )
    assert logged(url, completion.model_extra["refinery_response_id"])["prompt"] == (
        "What is the capital of Peru?"
    )
    image = {"type": "image_url", "image_url": {"url": "data:image/png;base64,AAAA"}}
    with pytest.raises(openai.BadRequestError):
        client.chat.completions.create(
            model="base", messages=[{"role": "user", "content": [image]}]
        )


@pytest.fixture
def auth_served(tmp_path, tiny_model_dir):
    from argon2 import PasswordHasher

    fast = PasswordHasher(time_cost=1, memory_cost=1024, parallelism=1)
    users = tmp_path / "users.yaml"
    users.write_text(f"alice: '{fast.hash('alice-secret-1')}'")
    with live_app(tmp_path / "data", tiny_model_dir, default_max_new_tokens=4,
                  users_file=users) as served_app:
        yield served_app


def test_login_is_enforced_and_the_turn_belongs_to_the_user(auth_served):
    services, url = auth_served
    for key in ("unused", "alice:wrong"):
        with pytest.raises(openai.AuthenticationError) as refused:
            client_for(url, key).chat.completions.create(model="base", messages=ASK)
        assert refused.value.body["type"] == "authentication_error"
    with pytest.raises(openai.AuthenticationError):
        client_for(url).models.list()

    alice = client_for(url, "alice:alice-secret-1")
    assert "base" in [model.id for model in alice.models.list()]
    completion = alice.chat.completions.create(model="base", messages=ASK)
    response_id = completion.model_extra["refinery_response_id"]
    basic = base64.b64encode(b"alice:alice-secret-1").decode()
    reply = httpx.get(f"{url}/api/v1/interactions", headers={"Authorization": f"Basic {basic}"},
                      timeout=60)  # fmt: skip
    rows = {row["response_id"]: row for row in reply.json()["items"]}
    assert rows[response_id]["user_id"] == "alice"
    with pytest.raises(openai.PermissionDeniedError):  # no acting as someone else
        alice.chat.completions.create(model="base", messages=ASK, user="bob")


@pytest.fixture
def queue_of_one(tmp_path, tiny_model_dir):
    with live_app(tmp_path / "data", tiny_model_dir, default_max_new_tokens=2,
                  max_queue=1) as served_app:
        yield served_app


def test_a_full_queue_answers_429_and_the_queued_completions_finish(queue_of_one):
    services, url = queue_of_one
    client = client_for(url)
    answers: list = []

    def ask() -> None:
        answers.append(client.chat.completions.create(model="base", messages=ASK))

    services.models.get()
    with services.models.use_lock:  # the model is busy: completions wait behind it
        waiting = [threading.Thread(target=ask) for _ in range(2)]  # one generating + one queued
        for thread in waiting:
            thread.start()
        wait_for(lambda: services.admission._in_flight == 2)
        for stream in (False, True):
            with pytest.raises(openai.RateLimitError) as refused:
                client.chat.completions.create(model="base", messages=ASK, stream=stream)
            assert refused.value.body["code"] == "rate_limit_exceeded"
            assert "busy" in refused.value.body["message"]
    for thread in waiting:
        thread.join()
    assert len(answers) == 2 and all(a.choices[0].message.content is not None for a in answers)
