"""POST /explain, /fairness, /fairness/probes and /explain/feedback-model over real HTTP."""

from __future__ import annotations

import pytest

SMALL = {"max_evals": 16, "batch_size": 8}


def chat(client, prompt: str, user: str) -> str:
    body = {"prompt": prompt, "user": user, "max_new_tokens": 4, "temperature": 0}
    response = client.post("/api/v1/chat", json=body)
    assert response.status_code == 200, response.text
    return response.json()["response_id"]


def rate(client, response_id: str, thumb: str, user: str) -> None:
    body = {"response_id": response_id, "thumb": thumb, "user": user}
    assert client.post("/api/v1/feedback", json=body).status_code == 200


def test_explain_a_typed_prompt_and_answer(client):
    body = {"prompt": "What is the capital of France?", "answer": "Paris.", **SMALL}
    response = client.post("/api/v1/explain", json=body)
    assert response.status_code == 200, response.text
    (result,) = response.json()["results"]
    assert result["words"] == ["What", "is", "the", "capital", "of", "France?"]
    assert len(result["shap"]) == len(result["lime"]) == 6
    assert sum(result["shap"]) == pytest.approx(
        result["full_score"] - result["masked_score"], abs=1e-3
    )
    again = client.post("/api/v1/explain", json=body).json()["results"][0]
    assert again["cached"] and again["shap"] == result["shap"]


def test_explain_a_logged_turn(client):
    response_id = chat(client, "Hello, how are you?", "ann")
    body = {"response_id": response_id, "methods": ["shap"], "answer": "I am fine.", **SMALL}
    response = client.post("/api/v1/explain", json=body)
    assert response.status_code == 200, response.text
    result = response.json()["results"][0]
    assert result["words"] == ["Hello,", "how", "are", "you?"]
    assert result["lime"] is None and len(result["shap"]) == 4


def test_explain_bad_input_is_a_clear_4xx(client):
    assert client.post("/api/v1/explain", json={}).status_code == 400
    missing = client.post("/api/v1/explain", json={"response_id": "nope"})
    assert missing.status_code == 404
    unknown = client.post("/api/v1/explain", json={"prompt": "hi", "answer": "x",
                                                   "models": ["no-such-adapter"]})
    assert unknown.status_code == 404 and "no-such-adapter" in unknown.json()["error"]
    budget = client.post("/api/v1/explain", json={"prompt": "hi", "answer": "x", "max_evals": 1})
    assert budget.status_code == 400 and "max_evals" in budget.json()["error"]
    extra = client.post("/api/v1/explain", json={"prompt": "hi", "colour": "red"})
    assert extra.status_code == 422


def test_fairness_over_logged_turns(client):
    for user, thumbs in (("ann", ["up", "up", "down"]), ("bob", ["down", "down", "up"])):
        for thumb in thumbs:
            rate(client, chat(client, "Hello", user), thumb, user)
    response = client.post("/api/v1/fairness", json={"features": ["user"], "n_boot": 20})
    assert response.status_code == 200, response.text
    report = response.json()["base"]
    groups = {g["group"]: g for g in report["groups"]}
    assert groups["ann"]["thumb_up"] == pytest.approx(2 / 3)
    assert groups["overall"]["count"] == 6
    disparities = report["disparities"]
    assert disparities["demographic_parity_difference"] == pytest.approx(1 / 3)
    single = client.post("/api/v1/fairness", json={"features": ["model"]})
    assert single.status_code == 400 and "at least two groups" in single.json()["error"]


def test_fairness_over_an_evaluation_set(client):
    rows = [
        {"prompt": "What is the capital of France?", "reference": "Paris", "lang": "en"},
        {"prompt": "Quelle est la capitale de la France ?", "reference": "Paris", "lang": "fr"},
    ]
    body = {"source": "rows", "features": ["lang"], "rows": rows, "n_boot": 0,
            "max_new_tokens": 3}
    response = client.post("/api/v1/fairness", json=body)
    assert response.status_code == 200, response.text
    data = response.json()
    assert len(data["rows"]) == 2 and data["tuned"] is None
    assert {g["group"] for g in data["base"]["groups"]} == {"en", "fr", "overall"}
    empty = client.post("/api/v1/fairness", json={**body, "rows": []})
    assert empty.status_code == 400


def test_probes_and_feedback_model(client):
    body = {"templates": ["Tell me about {term}."], "groups": {"a": ["Ann"], "b": ["Bob"]},
            "max_new_tokens": 3}
    response = client.post("/api/v1/fairness/probes", json=body)
    assert response.status_code == 200, response.text
    assert {g["metric"] for g in response.json()["gaps"]} == {"refusal", "length", "sentiment"}
    too_few = client.post("/api/v1/explain/feedback-model", json={})
    assert too_few.status_code == 400 and "rated turn" in too_few.json()["error"]
