"""Chat -> rating -> query through real HTTP, and every bad input as a clear 4xx."""

import json

import pytest

from core.store import MIGRATIONS

API = "/api/v1"


def chat(client, **body):
    return client.post(f"{API}/chat", json={"max_new_tokens": 6, "temperature": 0, **body})


def turn_count(client) -> int:
    return client.get(f"{API}/interactions").json()["total"]


def rating_rows(services) -> int:
    return services.db.fetch_one("SELECT count(*) FROM ratings")[0]


def test_health_reports_the_serving_model(client, settings):
    body = client.get(f"{API}/health").json()
    assert body["status"] == "ok" and body["model"] == settings.model
    assert body["schema_version"] == max(m.version for m in MIGRATIONS if m.component == "chatlog")


def test_chat_rating_query_round_trip(client, services):
    answer = chat(client, prompt="What is the capital of France?", user="ann").json()
    assert answer["tokens"] == 6 and answer["text"]
    assert answer["tokens_per_s"] > 0 and answer["confidence"] <= 0
    first = client.post(
        f"{API}/feedback",
        json={
            "response_id": answer["response_id"],
            "rating": 2,
            "thumb": "down",
            "correction": "Paris.",
            "tags": ["geo", "wrong"],
            "user": "ann",
        },
    )
    assert first.status_code == 200
    changed = client.post(
        f"{API}/feedback", json={"response_id": answer["response_id"], "rating": 4, "user": "ann"}
    )
    assert changed.json()["rating"] == 4 and changed.json()["correction"] == "Paris."
    client.post(
        f"{API}/feedback", json={"response_id": answer["response_id"], "thumb": "up", "user": "bob"}
    )

    rows = client.get(f"{API}/interactions", params={"min_rating": 4}).json()
    assert rows["total"] == 1
    row = rows["items"][0]
    assert row["response_id"] == answer["response_id"] and row["rater"] == "ann"
    assert row["tags"] == ["geo", "wrong"] and row["prompt"] == "What is the capital of France?"
    assert (
        client.get(f"{API}/interactions", params={"thumb": "up"}).json()["items"][0]["rater"]
        == "bob"
    )

    turn = services.log.get_turn(answer["response_id"])
    assert turn["context"][-1] == {"role": "user", "content": "What is the capital of France?"}
    assert turn["settings"]["temperature"] == 0 and turn["adapter_version"] is None
    assert turn["completion_tokens"] == 6 and turn["ttft_ms"] is not None


def test_multi_turn_history_is_kept_in_one_conversation(client, services):
    first = chat(client, prompt="hello").json()
    second = chat(
        client,
        prompt="and again",
        conversation_id=first["conversation_id"],
        history=[
            {"role": "user", "content": "hello"},
            {"role": "assistant", "content": first["text"]},
        ],
    ).json()
    turn = services.log.get_turn(second["response_id"])
    assert turn["turn_index"] == 1 and len(turn["context"]) == 3


def test_streaming_sends_text_events_then_the_record(client):
    with client.stream(
        "POST",
        f"{API}/chat",
        json={"prompt": "hello", "max_new_tokens": 8, "temperature": 0, "stream": True},
    ) as response:
        assert response.headers["content-type"].startswith("text/event-stream")
        events = [
            json.loads(line[6:]) for line in response.iter_lines() if line.startswith("data: ")
        ]
    assert len(events) >= 2
    final = events[-1]
    assert final["tokens"] == 8 and final["text"] == events[-2]["text"]


def test_overlong_conversation_is_truncated_and_said_so(client):
    history = []
    for index in range(40):
        history += [
            {"role": "user", "content": f"question {index} about the fox"},
            {"role": "assistant", "content": f"answer {index} about the dog"},
        ]
    answer = chat(client, prompt="last one", history=history).json()
    assert "dropped" in answer["notice"]


@pytest.mark.parametrize(
    ("body", "status", "words"),
    [
        ({"prompt": "   "}, 400, "empty"),
        ({"prompt": "x" * 20_001}, 400, "limit"),
        ({"prompt": "hi", "max_new_tokens": 5000}, 400, "limit"),
        ({"prompt": "hi", "temperature": 9}, 400, "temperature"),
        ({"prompt": "hi", "model": "no-such-model"}, 404, "unknown model"),
        ({"prompt": "hi", "surprise": 1}, 422, "expected fields"),
        ({"history": []}, 422, "expected fields"),
    ],
)
def test_bad_chat_requests_are_clear_4xx_and_write_nothing(client, body, status, words):
    response = client.post(f"{API}/chat", json=body)
    assert response.status_code == status
    assert words in response.json()["error"]
    assert turn_count(client) == 0


@pytest.mark.parametrize(
    ("body", "status", "words"),
    [
        ({"rating": 6}, 400, "1 to 5"),
        ({"rating": 0}, 400, "1 to 5"),
        ({"thumb": "sideways"}, 422, "expected fields"),
        ({}, 400, "at least one"),
        ({"rating": 3, "response_id": "nope"}, 404, "no response"),
    ],
)
def test_bad_feedback_is_a_clear_4xx_and_writes_nothing(client, services, body, status, words):
    response_id = chat(client, prompt="hello").json()["response_id"]
    response = client.post(f"{API}/feedback", json={"response_id": response_id, **body})
    assert response.status_code == status, response.json()
    assert words in response.json()["error"]
    assert rating_rows(services) == 0


def test_malformed_json_is_a_400(client):
    response = client.post(
        f"{API}/feedback", content=b'{"response_id": ', headers={"content-type": "application/json"}
    )
    assert response.status_code == 400 and "not valid JSON" in response.json()["error"]


def test_bad_interaction_filters_are_rejected(client):
    assert client.get(f"{API}/interactions", params={"min_rating": 9}).status_code == 422
    assert client.get(f"{API}/interactions", params={"date_from": "soon"}).status_code == 422


def test_the_ui_is_served_at_the_root(client):
    page = client.get("/")
    assert page.status_code == 200 and "<html" in page.text.lower()
    config = client.get("/config").json()
    labels = {c.get("props", {}).get("label") for c in config["components"]}
    assert {"Chat", "Logs"} <= labels


def test_compare_grounds_both_sides_exactly_as_chat_does(client, services):
    notes = "The spare battery for the X200 drill costs 49 euros and charges in forty minutes."
    uploaded = client.post(
        f"{API}/documents", files=[("files", ("drill.txt", notes.encode(), "text/plain"))]
    )
    assert uploaded.status_code == 200, uploaded.text
    question = "How much is a spare battery for the drill?"
    grounded = {"use_documents": True, "documents_k": 2, "max_new_tokens": 4, "temperature": 0}
    body = {"prompt": question, "model_a": "base", "model_b": "base+fewshot", **grounded}
    compared = client.post(f"{API}/compare", json=body)
    assert compared.status_code == 200, compared.text
    shown = compared.json()
    assert [s["document"] for s in shown["sources"]] == ["drill.txt"]  # once, for both sides
    chatted = chat(client, prompt=question, **grounded).json()
    assert chatted["sources"] == shown["sources"]  # the same retrieval
    chat_system = services.log.get_turn(chatted["response_id"])["context"][0]
    assert chat_system["role"] == "system" and "[1] (drill.txt)" in chat_system["content"]
    for side in ("left", "right"):
        turn = services.log.get_turn(shown[side]["response_id"])
        assert turn["context"][0] == chat_system  # the same system prompt, sources and all
        assert turn["retrieved_chunk_ids"] == [s["id"] for s in shown["sources"]]

    plain = client.post(f"{API}/compare", json={**body, "use_documents": False}).json()
    assert plain["sources"] == []
    assert services.log.get_turn(plain["left"]["response_id"])["retrieved_chunk_ids"] is None
    too_many = client.post(f"{API}/compare", json={**body, "documents_k": 50})
    assert too_many.status_code == 400 and "documents_k" in too_many.json()["error"]
