"""HTTP round trip: upload -> search -> grounded chat -> feedback -> build datasets -> export."""

from __future__ import annotations

import io
import json

import pandas as pd
import pytest

from tests.datasets.test_datasets import MANUAL

API = "/api/v1"


@pytest.fixture
def grounded_turn(client):
    upload = client.post(
        f"{API}/documents",
        files=[("files", ("manual.txt", MANUAL.encode(), "text/plain"))],
        data={"chunk_tokens": "24", "chunk_overlap": "0"},
    )
    assert upload.status_code == 200 and upload.json()["ingested"] == 1, upload.text
    found = client.post(f"{API}/search", json={"query": "reset the controller", "k": 2}).json()
    assert "reset the controller" in found["results"][0]["text"]
    chat = client.post(
        f"{API}/chat",
        json={
            "prompt": "How do I reset the controller?",
            "use_documents": True,
            "max_new_tokens": 4,
        },
    )
    assert chat.status_code == 200, chat.text
    turn_id = chat.json()["response_id"]
    rated = client.post(
        f"{API}/feedback",
        json={
            "response_id": turn_id,
            "rating": 5,
            "user": "ann",
            "correction": "Hold the blue button for ten seconds.",
        },
    )
    assert rated.status_code == 200, rated.text
    return turn_id, found["results"][0]


def test_build_list_read_and_export_over_http(client, grounded_turn):
    turn_id, top_hit = grounded_turn
    built = client.post(
        f"{API}/datasets", json={"name": "support", "kind": "sft", "validation_fraction": 0}
    )
    assert built.status_code == 201, built.text
    sft = built.json()
    assert (sft["version"], sft["train_count"]) == (1, 1)
    assert sft["lineage"]["turns"] == [turn_id]

    text = client.post(f"{API}/datasets", json={"name": "manual text", "kind": "text"}).json()
    assert text["train_count"] + text["validation_count"] >= 4
    embedding = client.post(
        f"{API}/datasets",
        json={
            "name": "retrieval",
            "kind": "embedding",
            "validation_fraction": 0,
            "hard_negatives": 1,
        },
    )
    assert embedding.status_code == 201, embedding.text
    emb = client.get(f"{API}/datasets/{embedding.json()['id']}").json()
    assert emb["train"][0]["query"] == "How do I reset the controller?"
    assert emb["train"][0]["positive"] == top_hit["text"]
    assert len(emb["train"][0]["negatives"]) == 1

    again = client.post(f"{API}/datasets", json={"name": "support", "kind": "sft"}).json()
    assert again["version"] == 2
    listed = client.get(f"{API}/datasets").json()["items"]
    assert {(i["name"], i["version"]) for i in listed} == {
        ("support", 1),
        ("support", 2),
        ("manual text", 1),
        ("retrieval", 1),
    }

    detail = client.get(f"{API}/datasets/{sft['id']}").json()
    target = detail["train"][0]["messages"][-1]
    assert target == {"role": "assistant", "content": "Hold the blue button for ten seconds."}

    jsonl = client.get(f"{API}/datasets/{sft['id']}/export", params={"format": "jsonl"})
    assert jsonl.status_code == 200
    lines = [json.loads(line) for line in jsonl.text.splitlines()]
    assert lines[0]["id"] == detail["train"][0]["id"] and lines[0]["split"] == "train"
    csv = client.get(f"{API}/datasets/{sft['id']}/export", params={"format": "csv"})
    assert pd.read_csv(io.StringIO(csv.text))["id"].tolist() == [lines[0]["id"]]
    parquet = client.get(f"{API}/datasets/{text['id']}/export", params={"format": "parquet"})
    frame = pd.read_parquet(io.BytesIO(parquet.content))
    assert len(frame) == text["train_count"] + text["validation_count"]

    imported = client.post(
        f"{API}/datasets/import",
        files={"file": ("support.jsonl", jsonl.content, "application/x-ndjson")},
        data={"name": "support copy", "validation_fraction": "0"},
    )
    assert imported.status_code == 201, imported.text
    copy = client.get(f"{API}/datasets/{imported.json()['id']}").json()
    assert copy["train"][0]["id"] == lines[0]["id"] and copy["kind"] == "sft"

    assert client.delete(f"{API}/datasets/{imported.json()['id']}").status_code == 200
    assert client.get(f"{API}/datasets/{imported.json()['id']}").status_code == 404


def test_rows_in_the_body_become_a_dataset(client):
    rows = [{"prompt": f"p{i}", "chosen": "good", "rejected": "bad"} for i in range(10)]
    made = client.post(
        f"{API}/datasets", json={"name": "pairs", "kind": "preference", "rows": rows, "seed": 3}
    )
    assert made.status_code == 201, made.text
    assert (made.json()["train_count"], made.json()["validation_count"]) == (9, 1)


def test_bad_dataset_requests_get_clear_4xx_answers(client):
    def error(response, status):
        assert response.status_code == status, response.text
        return response.json()["error"]

    assert "no sft examples" in error(
        client.post(f"{API}/datasets", json={"name": "x", "kind": "sft"}), 400
    )
    error(client.post(f"{API}/datasets", json={"name": "x", "kind": "poem"}), 422)
    error(client.post(f"{API}/datasets", json={"name": "x", "kind": "sft", "colour": 1}), 422)
    assert "row 1" in error(
        client.post(f"{API}/datasets", json={"name": "x", "kind": "text", "rows": [{"t": 1}]}), 400
    )
    error(client.get(f"{API}/datasets/nope"), 404)
    error(client.get(f"{API}/datasets/nope/export", params={"format": "jsonl"}), 404)
    rows = [{"text": "some words"}]
    made = client.post(f"{API}/datasets", json={"name": "t", "kind": "text", "rows": rows})
    assert "format" in error(
        client.get(f"{API}/datasets/{made.json()['id']}/export", params={"format": "xls"}), 400
    )
    assert "line 1" in error(
        client.post(f"{API}/datasets/import", files={"file": ("x.jsonl", b"{oops", "text/plain")}),
        400,
    )


def handlers(blocks, module: str) -> dict:
    """The event functions of one tab module, by name."""
    return {
        f.fn.__name__: f.fn
        for f in blocks.fns.values()
        if f.fn is not None and f.fn.__module__ == module
    }


def test_feedback_and_datasets_tabs_drive_the_same_services(services):
    from tests.rated_turns import add_turn, rate
    from ui.layout import build_app

    good = add_turn(services, "Capital of France?", "Paris is the capital.")
    bad = add_turn(services, "Capital of France?", "Lyon.")
    rate(services, good, "ann", rating=5)
    rate(services, bad, "ann", rating=1, correction="Paris.")
    blocks = build_app(services)
    feedback = handlers(blocks, "ui.tabs.feedback")
    summary, cards, table, selection, *_ = feedback["show"](
        "", "any", "any", "any", 1, 5, "any", [], "any", "any", "any", None, None, 1
    )
    assert summary.startswith("2 rated row(s)") and len(table) == 2
    assert cards.count('class="answer-card"') == 2
    act = feedback["act"]
    assert act("ann", selection, "", "selected rows", "set label", "x", None).startswith("⚠️")
    done = act("ann", selection, good, "selected rows", "add tags", "gold, checked", None)
    assert done.startswith("✅") and services.log.get_rating(good, "ann").tags == [
        "gold",
        "checked",
    ]
    agreement, verdicts, *_ = feedback["check"](selection, "rating")
    assert "duplicate prompts" in verdicts and "Agreement" in agreement

    datasets = handlers(blocks, "ui.tabs.datasets")
    message, _, chosen, _ = datasets["make_with_progress"](
        selection,
        "ui set",
        "preference",
        0,
        0.0,
        4,
        [],
        0,
        0,
        0,
        0,
        "",
        0,
        progress=lambda *args, **kwargs: None,
    )
    assert message.startswith("✅"), message
    text, figure, train, _, lineage = datasets["show"](chosen["value"])
    assert "ui set v1" in text and len(figure.data) >= 1
    assert set(train["chosen"]) == {"Paris is the capital.", "Paris."}  # rating gap, correction
    assert lineage["source"] == "feedback"
    assert datasets["export_file"](chosen["value"], "csv").endswith(".csv")
    failed, *_ = datasets["make_with_progress"](
        selection, " ", "sft", 0, 0.1, 4, [], 0, 0, 0, 0, "", 0, progress=None
    )
    assert failed.startswith("⚠️") and "name" in failed
