"""The `openai` engine against a real second Refinery: the remote is app.py in a subprocess on
its own data dir (transformers on the tiny model, an adapter registered as `tuned-1`), the local
side a Refinery whose answers all come from it. Greedy answers through the remote equal the local
reference engine's on the same weights (so options and the adapter really reach the server), turns
keep timing and the server's confidence, and a dead or unaware server is a clear error."""

from __future__ import annotations

import json
from dataclasses import replace

import httpx
import pytest

from core.serving.engines.run import generate_batch
from core.serving.generation import GenerationOptions, prepare_prompt
from core.serving.registry import ModelRegistry
from core.settings import Settings, parse_settings
from core.store import open_database
from core.store.registry import ADAPTER as ADAPTER_KIND
from core.store.registry import RegistryStore
from tests.conftest import LOCAL
from tests.e2e.served import ServedApp, free_port
from tests.tiny_adapters import make_tiny_adapter

API = "/api/v1"
ADAPTER = "tuned-1"
GREEDY = GenerationOptions(max_new_tokens=8, temperature=0)


def register(data_dir, adapter_dir, model: str, model_id: str = ADAPTER) -> None:
    """The adapter in that data dir's registry, as a finished training run leaves it."""
    data_dir.mkdir(parents=True, exist_ok=True)
    db = open_database(data_dir / "refinery.duckdb")
    try:
        ModelRegistry(RegistryStore(db, ADAPTER_KIND)).register(
            model_id=model_id, name="tuned", base_model=model, adapter_dir=adapter_dir,
            job_id=None, config={}, dataset_id=None, dataset_version=None, metrics={},
            duration_s=None, lineage={},
        )  # fmt: skip
    finally:
        db.close()


@pytest.fixture(scope="module")
def adapter(tmp_path_factory, tiny_model_dir):
    return make_tiny_adapter(tiny_model_dir, tmp_path_factory.mktemp("adapter") / "tuned")


@pytest.fixture(scope="module")
def remote(tmp_path_factory, tiny_model_dir, adapter):
    """A second Refinery serving the tiny model and the adapter on a loopback port."""
    data = tmp_path_factory.mktemp("remote") / "data"
    register(data, adapter, str(tiny_model_dir))
    with ServedApp(data, str(tiny_model_dir)) as app:
        yield app


def local_services(tmp_path, tiny_model_dir, base_url: str):
    from core.services import build_services

    return build_services(Settings(
        data_dir=tmp_path / "local", model=str(tiny_model_dir), default_max_new_tokens=8,
        engine="openai", openai_base_url=base_url,
    ))  # fmt: skip


@pytest.fixture
def local(tmp_path, tiny_model_dir, remote, adapter):
    """The first Refinery, every answer from the remote one; the same adapter registered."""
    from fastapi.testclient import TestClient

    from app import create_app

    register(tmp_path / "local", adapter, str(tiny_model_dir))
    services = local_services(tmp_path, tiny_model_dir, f"{remote.url}/v1")
    try:
        with TestClient(create_app(services), base_url=LOCAL) as client:
            yield services, client
    finally:
        services.close()


def reference(services, messages, adapter_dir=None) -> str:
    """The answer the local reference engine gives on the same weights."""
    with services.models.use(adapter_dir) as loaded:
        loaded = replace(loaded, engine=None)
        prompt = prepare_prompt(loaded, messages, GREEDY)
        return generate_batch(loaded, [prompt], GREEDY)[0].text


def remote_turns(remote: ServedApp) -> list[dict]:
    return httpx.get(f"{remote.api}/interactions", timeout=60).json()["items"]


def streamed(client, **body) -> list[dict]:
    with client.stream("POST", f"{API}/chat", json={
        "max_new_tokens": 8, "temperature": 0, "stream": True, **body,
    }) as response:  # fmt: skip
        assert response.status_code == 200, response.read()
        return [json.loads(line[6:]) for line in response.iter_lines()
                if line.startswith("data: ")]  # fmt: skip


def test_a_chat_answer_streams_from_the_remote_and_is_logged_with_timing_and_confidence(
    local, remote
):
    services, client = local
    events = streamed(client, prompt="What is the capital of France?")
    final = events[-1]
    assert len(events) >= 2 and final["text"]
    ask = [{"role": "user", "content": "What is the capital of France?"}]
    assert final["text"] == reference(services, ask)  # temperature and penalty reached it
    turn = services.log.get_turn(final["response_id"])
    assert turn["settings"]["engine"] == "openai"
    assert turn["ttft_ms"] is not None and turn["ttft_ms"] <= turn["latency_ms"]
    assert turn["tokens_per_s"] > 0 and turn["completion_tokens"] == final["tokens"] > 0
    assert turn["prompt_tokens"] > 0
    served = {row["response_id"]: row for row in remote_turns(remote)}
    mirrored = [row for row in served.values() if row["response"] == final["text"]]
    assert mirrored and mirrored[-1]["adapter_version"] is None  # the base model answered
    # the confidence is the remote's own, from the log-probabilities it returned
    assert turn["confidence"] is not None and turn["confidence"] < 0
    assert turn["confidence"] == pytest.approx(mirrored[-1]["confidence"], abs=1e-4)


def test_an_adapter_name_routes_to_the_remote_adapter(local, remote, adapter):
    services, client = local
    ask = [{"role": "user", "content": "Tell me about Peru."}]
    reply = client.post(f"{API}/chat", json={
        "prompt": ask[0]["content"], "model": ADAPTER, "max_new_tokens": 8, "temperature": 0,
    })  # fmt: skip
    assert reply.status_code == 200, reply.text
    answer = reply.json()
    assert answer["text"] == reference(services, ask, adapter)
    assert answer["text"] != reference(services, ask)  # the adapter changes this answer
    assert services.log.get_turn(answer["response_id"])["adapter_version"] == ADAPTER
    last = remote_turns(remote)[0]
    assert last["adapter_version"] == ADAPTER and last["response"] == answer["text"]


def test_base_and_adapter_rows_are_asked_side_by_side(local, adapter):
    services, _ = local
    asks = [[{"role": "user", "content": text}] for text in ("hello", "Tell me about Peru.")]
    with services.models.use_rows([None, adapter]) as loaded:
        assert loaded.engine.name == "openai" and loaded.engine.models == [
            services.models.name, ADAPTER]
        prompts = [prepare_prompt(loaded, ask, GREEDY) for ask in asks]
        results = generate_batch(loaded, prompts, GREEDY)
    assert [r.engine for r in results] == ["openai", "openai"]
    assert [r.text for r in results] == [
        reference(services, asks[0]), reference(services, asks[1], adapter)]
    assert all(r.confidence is not None and r.tokens_per_s > 0 for r in results)


def test_a_model_the_server_does_not_serve_is_a_clear_error(local, remote, tmp_path,
                                                             tiny_model_dir):
    services, client = local
    other = make_tiny_adapter(tiny_model_dir, tmp_path / "only-here", seed=2)
    services.registry.register(
        model_id="only-here", name="local only", base_model=services.models.name,
        adapter_dir=other, job_id=None, config={}, dataset_id=None, dataset_version=None,
        metrics={}, duration_s=None, lineage={},
    )  # fmt: skip
    before = client.get(f"{API}/interactions").json()["total"]
    reply = client.post(f"{API}/chat", json={"prompt": "hello", "model": "only-here"})
    assert reply.status_code == 503
    body = reply.json()
    assert "does not serve the model 'only-here'" in body["error"] and "Traceback" not in reply.text
    assert client.get(f"{API}/interactions").json()["total"] == before  # nothing logged
    assert client.post(f"{API}/chat", json={"prompt": "hello"}).status_code == 200


def test_an_unreachable_server_is_a_clear_error_and_the_app_keeps_working(tmp_path,
                                                                          tiny_model_dir):
    from fastapi.testclient import TestClient

    from app import create_app

    services = local_services(tmp_path, tiny_model_dir, f"http://127.0.0.1:{free_port()}/v1")
    try:
        with TestClient(create_app(services), base_url=LOCAL) as client:
            for _ in range(2):
                reply = client.post(f"{API}/chat", json={"prompt": "hello"})
                assert reply.status_code == 503
                assert "cannot reach the OpenAI-compatible server" in reply.json()["error"]
            events = streamed(client, prompt="hello")
            assert "cannot reach" in json.dumps(events)
            assert client.get(f"{API}/health").status_code == 200
            assert client.get(f"{API}/interactions").json()["total"] == 0
    finally:
        services.close()


def test_the_engine_settings_come_from_flags_or_the_environment():
    flags = parse_settings(["--engine", "openai", "--openai-base-url", "http://gpu1:8000/v1",
                            "--openai-model", "HuggingFaceTB/SmolLM2-135M-Instruct"], env={})
    assert flags.engine == "openai" and flags.openai_base_url == "http://gpu1:8000/v1"
    assert flags.openai_model == "HuggingFaceTB/SmolLM2-135M-Instruct"
    env = parse_settings([], env={"REFINERY_ENGINE": "openai",
                                  "REFINERY_OPENAI_BASE_URL": "https://llm.example/v1",
                                  "REFINERY_OPENAI_API_KEY": "sk-secret"})  # fmt: skip
    assert env.openai_base_url == "https://llm.example/v1" and env.openai_api_key == "sk-secret"
    assert "sk-secret" not in repr(env)
    with pytest.raises(ValueError, match="--openai-base-url"):
        parse_settings(["--engine", "openai"], env={})


def test_chat_answers_do_not_wait_for_the_local_weights(local):
    """The remote generates: a chat answer comes while the local model is held (say by the
    Explain tab), so chat answers run side by side rather than one at a time."""
    services, client = local
    with services.models.use(None):
        reply = client.post(f"{API}/chat", json={"prompt": "hello", "temperature": 0})
    assert reply.status_code == 200 and reply.json()["text"]
