"""The Start page's counts and next step over a real store, the training estimate with a real
tokenizer, and the readable table cells."""

from __future__ import annotations

from datetime import datetime

from core.operations.loop_state import next_step
from core.training.estimate import estimate
from tests.rated_turns import add_turn, rate
from ui.readable import cell, frame, named, short_id, when

ZERO = {"documents": 0, "chunks": 0, "turns": 0, "ratings": 0, "rated_turns": 0, "labels": 0,
        "datasets": 0, "runs": 0, "active_runs": 0, "adapters": 0, "promotions": 0, "votes": 0}


def chat_row(prompt: str, answer: str) -> dict:
    return {"messages": [{"role": "user", "content": prompt},
                         {"role": "assistant", "content": answer}]}


def test_counts_follow_the_store_and_name_the_next_step(client, services):
    state = client.get("/api/v1/loop").json()
    assert state["next"]["stage"] == "documents"
    before = services.dashboard.queries.loop_counts()
    client.post("/api/v1/documents", files=[("files", ("a.md", b"# A\n\nShips in 5 days.",
                                                       "text/plain"))])
    turns = [add_turn(services, f"question {n}", f"answer {n}", minutes=n) for n in range(3)]
    for turn in turns:
        rate(services, turn, rating=5, thumb="up")
    rate(services, turns[0], rater="bob", rating=4)
    after = services.dashboard.queries.loop_counts()
    assert after != before  # the UI's poll notices the change
    assert (after["documents"], after["turns"], after["ratings"], after["rated_turns"]) == \
        (1, 3, 4, 3)
    state = client.get("/api/v1/loop").json()
    assert state["next"] == {"stage": "datasets", "action": "Build a dataset",
                             "sentence": "1 document, 3 rated turns: build a dataset"}
    services.datasets.create_from_rows(name="d", kind="sft", rows=[chat_row("q", "a")] * 2)
    assert client.get("/api/v1/loop").json()["next"]["stage"] == "train"


def test_next_step_walks_the_loop_in_order():
    steps = [next_step({**ZERO, **change}).stage for change in (
        {}, {"documents": 1}, {"documents": 1, "turns": 2, "rated_turns": 1},
        {"documents": 1, "turns": 5, "rated_turns": 5},
        {"documents": 1, "turns": 5, "rated_turns": 5, "datasets": 1},
        {"documents": 1, "turns": 5, "rated_turns": 5, "datasets": 1, "runs": 1, "adapters": 1},
        {"documents": 1, "turns": 5, "rated_turns": 5, "datasets": 1, "runs": 1, "adapters": 1,
         "votes": 2},
    )]
    assert steps == ["documents", "chat", "chat", "datasets", "train", "compare", "audit"]
    running = next_step({**ZERO, "documents": 1, "turns": 5, "rated_turns": 5, "datasets": 1,
                         "runs": 1, "active_runs": 1})
    assert running.stage == "train" and "in progress" in running.sentence


def test_estimate_fits_long_rows_and_names_the_fix_when_none_can_train(services):
    tokenizer = services.models.get().tokenizer
    long_prompt = "context " * 200
    rows = [chat_row("short question", "short answer")] * 3 + [chat_row(long_prompt, "yes")]
    spec = services.training.make_spec({"max_length": 64, "batch_size": 2, "epochs": 1,
                                       "grad_accumulation": 1})
    found = estimate(spec, rows, "sft", tokenizer=tokenizer)
    # the long prompt is cut to fit (never the answer), so every row still trains
    assert (found.rows, found.kept, found.dropped) == (4, 4, 0)
    assert found.steps == 2 and found.tokens > 0 and found.eta_s is None
    assert found.longest_prompt > 64 and found.problem() is None
    tiny = services.training.make_spec({"max_length": 16})  # not even the chat template fits
    only_long = estimate(tiny, rows[-1:], "sft", tokenizer=tokenizer)
    assert only_long.kept == 0 and only_long.problem().startswith("Training would fail")
    assert "raise Max length" in only_long.problem()


def test_cells_are_readable():
    assert short_id("adapter-5ad0379159d6") == "5ad03791"
    assert named("kettle", "adapter-5ad0379159d6") == "kettle · 5ad03791"
    assert when("2026-12-06T00:12:34.5") == "2026-12-06 00:12"
    assert cell(0.123456789) == 0.123 and cell(["a", "b"]) == "a, b"
    assert cell({"lr": 0.000123456}) == "lr: 0.000123"
    table = frame([{"id": "x-1a2b3c4d5e", "at": datetime(2026, 1, 2, 3, 4), "tags": ["a"]}],
                  ["tags", "at", "id"], ids=("id",))
    assert table.iloc[0].tolist() == ["a", "2026-01-02 03:04", "1a2b3c4d"]
