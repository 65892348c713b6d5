"""Automatic evaluation on a tiny model: every metric, progress, cancel, storage, API, table."""

from __future__ import annotations

import json
import math
import threading
import time

import pytest

from core.comparison.evaluation import (
    METRICS,
    EvalRequest,
    before_after,
    exact_match,
    read_eval_file,
    rouge_l,
    token_f1,
)
from core.errors import InvalidInput
from tests.tiny_adapters import make_tiny_adapter

ROWS = [
    {
        "id": "paris",
        "messages": [
            {"role": "user", "content": "What is the capital of France?"},
            {"role": "assistant", "content": "The capital of France is Paris."},
        ],
        "contexts": ["The capital of France is Paris."],
    },
    {"id": "fox", "prompt": "The quick brown fox", "reference": "jumps over the lazy dog."},
    {"id": "free", "prompt": "Hello, how are you today?"},  # no reference: reference-free only
]


def test_overlap_scores_known_values():
    assert exact_match("The  Paris!", "paris") == 1.0
    assert token_f1("the cat sat", "a cat sat down") == pytest.approx(0.8)  # p 1, r 2/3
    # LCS("a b c d", "a c d e") = 3 -> p = r = 3/4
    assert rouge_l("a b c d", "a c d e") == pytest.approx(0.75)
    assert rouge_l("", "x") == 0.0 and token_f1("", "") == 1.0
    # rouge-score's tokenisation: punctuation and case do not count
    assert rouge_l("Paris.", "paris") == 1.0
    assert rouge_l("It is Paris, France.", "Paris") == pytest.approx(2 * 0.25 / 1.25)


def test_read_eval_files(tmp_path):
    jsonl = tmp_path / "set.jsonl"
    jsonl.write_text("\n".join(json.dumps(r) for r in ROWS))
    assert len(read_eval_file(jsonl)) == 3
    table = tmp_path / "set.csv"
    table.write_text("prompt,reference\nhi,hello\n")
    assert read_eval_file(table) == [{"prompt": "hi", "reference": "hello"}]
    bad = tmp_path / "set.json"
    bad.write_text("{not json")
    with pytest.raises(InvalidInput, match="not valid JSON"):
        read_eval_file(bad)
    with pytest.raises(InvalidInput, match="use a .jsonl"):
        read_eval_file(tmp_path / "set.txt")


def test_evaluation_run_produces_every_metric(services, tiny_model_dir, tmp_path):
    seen = []
    base = services.evaluations.run(
        EvalRequest(model="base", rows=ROWS, max_new_tokens=6),
        progress=lambda done, total: seen.append((done, total)),
    )
    assert seen == [(1, 3), (2, 3), (3, 3)]
    assert base["status"] == "done" and base["done"] == 3
    metrics = base["metrics"]
    for name in METRICS:
        assert metrics[name] is not None, name
    assert metrics["with_reference"] == 2 and metrics["items"] == 3
    assert math.exp(metrics["loss"]) == pytest.approx(metrics["perplexity"])
    assert metrics["loss"] > 0 and metrics["tokens_per_s"] > 0
    assert -1 <= metrics["relevance"] <= 1 and -1 <= metrics["groundedness"] <= 1
    free = next(item for item in base["items"] if item["id"] == "free")
    assert "nll" not in free and "relevance" in free
    stored = services.evaluations.get(base["id"])
    assert stored["metrics"] == metrics and stored["model_version"] == services.models.name

    # Adapter folders named by path must lie inside the data dir.
    adapter = make_tiny_adapter(tiny_model_dir, services.settings.data_dir / "lora")
    tuned = services.evaluations.run(EvalRequest(model=str(adapter), rows=ROWS, max_new_tokens=6))
    assert tuned["metrics"]["loss"] != pytest.approx(metrics["loss"])  # other weights
    table = {row["metric"]: row for row in before_after([base, tuned])}
    assert table["loss"]["change"] == pytest.approx(tuned["metrics"]["loss"] - metrics["loss"])
    assert table["loss"]["better"] == (tuned["metrics"]["loss"] < metrics["loss"])


def test_cancel_stops_a_run_and_keeps_partial_results(services):
    rows = [{"prompt": f"Hello {i}", "reference": "fine"} for i in range(40)]
    cancel = threading.Event()

    def cancel_after_two(done, total):
        if done == 2:
            cancel.set()

    run = services.evaluations.run(
        EvalRequest(model="base", rows=rows, max_new_tokens=2),
        progress=cancel_after_two,
        cancel=cancel,
    )
    assert run["status"] == "cancelled" and run["metrics"]["items"] == 2
    assert run["total"] == 40 and run["done"] == 2


def test_dataset_validation_split_and_api(client, services):
    rows = [
        {"messages": [{"role": "user", "content": f"Question {i}?"},
                      {"role": "assistant", "content": f"Answer {i}."}]}
        for i in range(10)
    ]
    dataset = services.datasets.create_from_rows(
        name="qa", kind="sft", rows=rows, validation_fraction=0.3
    )
    started = client.post(
        "/api/v1/evaluations",
        json={"model": "base", "dataset_id": dataset.id, "max_new_tokens": 3},
    )
    assert started.status_code == 200, started.text
    run_id = started.json()["id"]
    for _ in range(600):
        run = client.get(f"/api/v1/evaluations/{run_id}").json()
        if run["status"] != "running":
            break
        time.sleep(0.1)
    assert run["status"] == "done", run
    assert run["total"] == len(dataset.validation) and "validation" in run["source"]
    assert run["metrics"]["loss"] is not None
    listed = client.get("/api/v1/evaluations", params={"ids": run_id}).json()
    assert listed["table"][0]["metric"] == "loss"
    bad = client.post("/api/v1/evaluations", json={"model": "base"})
    assert bad.status_code == 400
    missing = client.post("/api/v1/evaluations", json={"model": "base", "dataset_id": "nope"})
    assert missing.status_code == 404
    assert client.get("/api/v1/evaluations/nope").status_code == 404
