"""Side by side on a tiny model and a tiny LoRA adapter: logging, blind mode, no leaks, gates."""

from __future__ import annotations

import random
import threading
import uuid
from collections import Counter
from datetime import datetime

import pytest

from core.comparison.arena import ArenaService, CompareRequest, assign_sides
from core.errors import Conflict, InvalidInput, NotFound
from core.feedback.ratings import Feedback
from core.serving.chat import ChatRequest
from core.serving.generation import GenerationOptions
from core.serving.modelspec import AnswerStream
from core.store.arena import ComparisonRecord
from tests.tiny_adapters import make_tiny_adapter

GREEDY = GenerationOptions(max_new_tokens=6, temperature=0.0)


@pytest.fixture(scope="module")
def adapter_dir(tiny_model_dir, tmp_path_factory):
    return make_tiny_adapter(tiny_model_dir, tmp_path_factory.mktemp("adapters") / "tiny-lora")


@pytest.fixture
def registered(services, adapter_dir):
    """The tiny adapter registered under the id 'tuned'."""
    services.registry.register(
        model_id="tuned", name="tuned", base_model=services.models.name, adapter_dir=adapter_dir,
        job_id=None, config={}, dataset_id=None, dataset_version=None, metrics={},
        duration_s=None, lineage={},
    )
    return "tuned"


def ask(prompt: str, model_a="base", model_b="tuned", **extra) -> CompareRequest:
    return CompareRequest(prompt=prompt, model_a=model_a, model_b=model_b, options=GREEDY, **extra)


def fake_comparison(services, left: str, right: str) -> str:
    """A stored comparison without generation, to vote on (the vote path is the real one)."""
    record = ComparisonRecord(
        id=uuid.uuid4().hex, created_at=datetime.now(), user_id="t", prompt="q", blind=True,
        left_model=left, left_version=left, right_model=right, right_version=right,
        left_interaction_id="l", right_interaction_id="r",
    )
    services.arena.store.add_comparison(record)
    return record.id


def cast(services, left: str, right: str, vote: str, times: int = 1) -> None:
    for _ in range(times):
        services.arena.vote(fake_comparison(services, left, right), vote, voter="v")


def test_compare_streams_both_sides_and_logs_them_as_rateable_turns(services, registered):
    updates = list(services.arena.stream(ask("What is the capital of France?")))
    assert {u.side for u in updates} == {"left", "right"}
    assert {u.side for u in updates if u.turn is None} == {"left", "right"}  # both streamed
    record = updates[-1].comparison
    assert (record.left_model, record.right_model) == ("base", "tuned")
    left = services.log.get_turn(record.left_interaction_id)
    right = services.log.get_turn(record.right_interaction_id)
    assert left["adapter_version"] is None and right["adapter_version"] == "tuned"
    assert right["settings"]["arena"]["comparison_id"] == record.id
    for turn in (left, right):
        assert turn["latency_ms"] > 0 and turn["completion_tokens"] > 0
    services.feedback.rate(Feedback(response_id=right["id"], rating=5, user="judge"))
    assert services.log.get_rating(right["id"], "judge").rating == 5


def test_one_batch_gives_the_answers_of_one_at_a_time(services, registered, tiny_model_dir):
    # Adapter folders named by path must lie inside the data dir.
    other = make_tiny_adapter(tiny_model_dir, services.settings.data_dir / "other", seed=5)
    example = services.chat.complete(ChatRequest(prompt="Tell me about France", options=GREEDY))
    services.feedback.rate(Feedback(response_id=example.turn.id, thumb="up"))
    resolver = services.arena.resolver
    for prompt in ("What is the capital of France?", "Hello, how are you today?"):
        # base+fewshot has a longer prompt than its partner: the batch is left-padded
        for pair in (("base", "tuned"), ("tuned", "base+fewshot"), ("tuned", str(other))):
            together = turns(services, services.arena.compare(ask(prompt, *pair)).comparison)
            alone = tuple(
                "".join(AnswerStream(resolver, resolver.resolve(spec),
                                     [{"role": "user", "content": prompt}], GREEDY))
                for spec in pair
            )
            assert together == alone, (prompt, pair)
        assert len(set(together)) == 2  # two different adapters really answer differently


def test_an_adapter_that_cannot_share_a_batch_is_refused_clearly(services, tiny_model_dir):
    dora = make_tiny_adapter(tiny_model_dir, services.settings.data_dir / "dora", use_dora=True)
    with pytest.raises(InvalidInput, match="plain LoRA on linear layers"):
        services.arena.compare(ask("Hello", "base", str(dora)))
    assert services.arena.compare(ask("Hello", "base", "base+fewshot")).comparison is not None


def test_blind_sides_are_balanced():
    rng = random.Random(7)
    counts = Counter(assign_sides(rng, "a", "b")[0] for _ in range(2000))
    assert abs(counts["a"] - 1000) < 100  # binomial sd ~22: a 4.5-sigma band


def test_blind_mode_hides_names_until_the_vote(client, registered):
    body = {
        "prompt": "Hello, how are you today?", "model_a": "base", "model_b": "tuned",
        "blind": True, "max_new_tokens": 4, "temperature": 0, "user": "ann",
    }
    shown = client.post("/api/v1/compare", json=body).json()
    assert shown["left"]["model"] is None and shown["right"]["model"] is None
    assert shown["left"]["text"] is not None and shown["right"]["tokens"] >= 1
    voted = client.post(
        "/api/v1/votes", json={"comparison_id": shown["comparison_id"], "vote": "left"}
    ).json()
    assert {voted["left"]["model"], voted["right"]["model"]} == {"base", "tuned"}
    again = client.post(
        "/api/v1/votes", json={"comparison_id": shown["comparison_id"], "vote": "right"}
    )
    assert again.status_code == 409
    summary = client.get("/api/v1/votes/summary", params={"model_a": "tuned", "model_b": "base"})
    expected_win = voted["left"]["model"] == "tuned"
    assert summary.json()["votes"] == 1 and summary.json()["wins_a"] == int(expected_win)
    bad = client.post("/api/v1/votes", json={"comparison_id": "nope", "vote": "left"})
    assert bad.status_code == 404
    wrong = client.post("/api/v1/votes", json={"comparison_id": "x", "vote": "up"})
    assert wrong.status_code in (400, 422)


def test_blind_mode_randomises_real_comparisons(services, registered):
    arena = ArenaService(services.arena.resolver, services.log, services.arena.store,
                         rng=random.Random(3))
    lefts = Counter(
        arena.compare(ask(f"q{i}", blind=True)).comparison.left_model for i in range(8)
    )
    assert set(lefts) == {"base", "tuned"}


def test_adapter_rows_never_leak_between_concurrent_requests(services, registered):
    arena = services.arena
    prompts = ["What is the capital of France?", "The quick brown fox", "Hello, how are you?"]
    sequential = {
        p: (lambda c: (c.left_model, c.right_model, turns(services, c)))(
            arena.compare(ask(p)).comparison
        )
        for p in prompts
    }
    base_answers = {p: v[2][0] for p, v in sequential.items()}
    tuned_answers = {p: v[2][1] for p, v in sequential.items()}
    assert base_answers != tuned_answers  # the adapter really changes the output
    results: dict[tuple[str, int], tuple] = {}

    def run(prompt: str, worker: int) -> None:
        order = ("base", "tuned") if worker % 2 == 0 else ("tuned", "base")
        record = arena.compare(ask(prompt, *order)).comparison
        results[prompt, worker] = dict(zip(order, turns(services, record), strict=True))

    threads = [threading.Thread(target=run, args=(p, w)) for p in prompts for w in range(2)]
    for thread in threads:
        thread.start()
    for thread in threads:
        thread.join()
    assert len(results) == 6
    for (prompt, _), answers in results.items():
        assert answers == {"base": base_answers[prompt], "tuned": tuned_answers[prompt]}


def turns(services, record) -> tuple[str, str]:
    return tuple(
        services.log.get_turn(i)["response"]
        for i in (record.left_interaction_id, record.right_interaction_id)
    )


def test_fewshot_uses_well_rated_similar_examples(services):
    turn = services.chat.complete(
        ChatRequest(prompt="What is the capital of France?", options=GREEDY)
    ).turn
    services.feedback.rate(Feedback(response_id=turn.id, rating=5, correction="Paris."))
    other = services.chat.complete(ChatRequest(prompt="Hello there", options=GREEDY)).turn
    services.feedback.rate(Feedback(response_id=other.id, thumb="down"))
    update = services.arena.compare(ask("capital of France?", "base", "base+fewshot"))
    right = services.log.get_turn(update.comparison.right_interaction_id)
    assert right["settings"]["arena"]["fewshot_ids"] == [turn.id]
    assert any(m["content"] == "Paris." for m in right["context"])
    assert update.comparison.right_version.endswith("+fewshot")


def test_promote_refuses_without_evidence_and_promotes_with_it(services, registered):
    with pytest.raises(Conflict, match="0 of the 10 votes"):
        services.arena.promote("tuned", "base")
    cast(services, "tuned", "base", "left", 4)
    cast(services, "base", "tuned", "right", 2)
    with pytest.raises(Conflict, match="6 of the 10 votes"):
        services.arena.promote("tuned", "base")
    cast(services, "base", "tuned", "tie", 4)
    gate = services.arena.gate("tuned", "base")
    assert gate.summary.wins_a == 6 and gate.summary.ties == 4
    assert gate.allowed and gate.summary.p_value == pytest.approx(2 * 0.5**6)
    strict = services.arena.gate("tuned", "base", alpha=0.01)
    assert not strict.allowed and "not significant" in strict.reason
    assert not services.arena.gate("base", "tuned").allowed  # the loser never passes
    cast(services, "base", "tuned", "left", 2)  # the incumbent wins some: 6-2, p = 0.29
    with pytest.raises(Conflict, match="not significant"):
        services.arena.promote("tuned", "base")
    cast(services, "tuned", "base", "left", 10)  # 16-2
    row = services.arena.promote("tuned", "base", user="lead")
    assert row["action"] == "promote" and row["evidence"]["wins_a"] == 16
    assert services.registry.active().id == "tuned"
    back = services.arena.rollback(user="lead")
    assert back["action"] == "rollback" and back["previous"] == "tuned"
    assert services.registry.active() is None
    assert [h["action"] for h in services.arena.history()] == ["rollback", "promote"]


def test_promote_needs_an_adapter(services, registered):
    cast(services, "base+fewshot", "base", "left", 12)
    assert services.arena.gate("base+fewshot", "base").allowed
    with pytest.raises(InvalidInput, match="only adapters"):
        services.arena.promote("base+fewshot", "base")
    with pytest.raises(InvalidInput):
        services.arena.gate("tuned", "base", alpha=1.5)


def test_leaderboard_over_three_models(client, services):
    cast(services, "a", "b", "left", 6)
    cast(services, "b", "c", "left", 6)
    cast(services, "a", "c", "left", 6)
    cast(services, "c", "a", "tie", 2)
    board = client.get("/api/v1/votes/leaderboard").json()
    assert [r["model"] for r in board["ratings"]] == ["a", "b", "c"]
    assert len(board["pairs"]) == 3
    ac = next(p for p in board["pairs"] if {p["model_a"], p["model_b"]} == {"a", "c"})
    assert ac["ties"] == 2 and ac["votes"] == 8
    gate = client.get("/api/v1/promotions/gate", params={"challenger": "a", "incumbent": "c"})
    assert gate.json()["allowed"] is False and "8 of the 10" in gate.json()["reason"]
    refused = client.post("/api/v1/promotions", json={"challenger": "a", "incumbent": "c"})
    assert refused.status_code == 409
    loose = client.get(
        "/api/v1/promotions/gate", params={"challenger": "a", "incumbent": "c", "min_votes": 8}
    )
    assert loose.json()["allowed"] is True  # 6-0 with ties excluded: p = 0.031


def test_bad_requests_are_clear(client, services):
    with pytest.raises(InvalidInput):
        ask("q", "base", "base")
    with pytest.raises(NotFound):
        services.arena.compare(ask("q", "base", "no-such-adapter"))
    response = client.post("/api/v1/compare", json={"prompt": "", "model_b": "tuned"})
    assert response.status_code == 400
    response = client.post("/api/v1/compare", json={"prompt": "hi", "model_b": "ghost"})
    assert response.status_code == 404 and "ghost" in response.json()["error"]


def test_both_bad_votes_do_not_count_towards_the_minimum(services):
    cast(services, "x", "y", "left", 6)
    cast(services, "y", "x", "both_bad", 20)
    gate = services.arena.gate("x", "y")
    assert not gate.allowed and "6 of the 10 votes" in gate.reason
    assert "20 both-bad not counted" in gate.reason
    assert gate.summary.votes == 26 and gate.summary.counted == 6
    cast(services, "x", "y", "tie", 4)  # ties do count: someone compared the two
    gate = services.arena.gate("x", "y")
    assert gate.allowed and gate.summary.counted == 10
    assert gate.summary.p_value == pytest.approx(2 * 0.5**6)


def test_few_votes_show_a_not_enough_state_and_a_wide_interval(client, services):
    cast(services, "x", "y", "left", 1)
    summary = client.get("/api/v1/votes/summary", params={"model_a": "x", "model_b": "y"}).json()
    assert summary["win_rate_a"] == 1.0 and summary["enough"] is False
    assert summary["verdict"] == "not enough votes yet (1 of 10)"
    assert summary["ci_high"] - summary["ci_low"] > 0.9  # one vote: the rate is anywhere
    board = client.get("/api/v1/votes/leaderboard").json()["ratings"]
    assert [r["enough"] for r in board] == [False, False]
    assert all(r["high"] - r["low"] > 2.0 for r in board)
    cast(services, "x", "y", "left", 9)
    summary = services.arena.summary("x", "y")
    assert summary.enough and summary.verdict.startswith("x is better (p = 0.002")
