"""A/B experiments: stable arms, live chat serving the arm's model, results and a decision."""

from __future__ import annotations

import uuid
from collections import Counter

import pytest

from core.comparison.experiments import ExperimentSpec, arm_for
from core.errors import Conflict, InvalidInput, NotFound
from core.feedback.ratings import Feedback
from core.serving.chat import ChatRequest
from core.serving.generation import GenerationOptions
from tests.tiny_adapters import make_tiny_adapter

GREEDY = GenerationOptions(max_new_tokens=3, temperature=0.0)


def test_same_user_same_arm_and_split_close_to_target():
    assert {arm_for("exp1", "ann", 0.5) for _ in range(20)} == {arm_for("exp1", "ann", 0.5)}
    for split in (0.5, 0.2):
        counts = Counter(arm_for("exp1", f"user-{i}", split) for i in range(10_000))
        assert counts["B"] / 10_000 == pytest.approx(split, abs=0.02)  # sd ~0.005
    users = [f"u{i}" for i in range(200)]
    other = sum(arm_for("exp1", u, 0.5) != arm_for("exp2", u, 0.5) for u in users)
    assert 60 < other < 140  # a new experiment reshuffles users independently


def test_spec_validation():
    with pytest.raises(InvalidInput, match="end condition"):
        ExperimentSpec(name="x", model_a="base", model_b="base+fewshot")
    with pytest.raises(InvalidInput, match="share"):
        ExperimentSpec(name="x", model_a="base", model_b="t", split_b=1.0, end_rated_turns=10)
    with pytest.raises(InvalidInput, match="same"):
        ExperimentSpec(name="x", model_a="base", model_b="base", end_rated_turns=10)


@pytest.fixture
def tuned(services, tiny_model_dir, tmp_path):
    adapter = make_tiny_adapter(tiny_model_dir, tmp_path / "lora")
    services.registry.register(
        model_id="tuned", name="tuned", base_model=services.models.name, adapter_dir=adapter,
        job_id=None, config={}, dataset_id=None, dataset_version=None, metrics={},
        duration_s=None, lineage={},
    )
    return "tuned"


def test_live_chat_serves_each_users_arm_and_results_decide(client, services, tuned):
    created = client.post(
        "/api/v1/ab-tests",
        json={"name": "tuned vs base", "model_a": "base", "model_b": tuned, "split_b": 0.5,
              "end_rated_turns": 40, "metric": "thumbs"},
    )
    assert created.status_code == 200, created.text
    experiment_id = created.json()["id"]
    again = client.post(
        "/api/v1/ab-tests",
        json={"name": "second", "model_b": tuned, "end_rated_turns": 5},
    )
    assert again.status_code == 409
    pool = {f"user{i}": arm_for(experiment_id, f"user{i}", 0.5) for i in range(60)}
    # six people per arm, whatever the experiment's random id makes of the names
    arms = {u: side for side in "AB" for u in [u for u, arm in pool.items() if arm == side][:6]}
    users = list(arms)
    for user in users:
        for _ in range(2):
            turn = services.chat.complete(
                ChatRequest(prompt="Hello, how are you?", user=user, options=GREEDY)
            ).turn
            assert turn.adapter_version == (tuned if arms[user] == "B" else None)
            # B's answers are liked, A's are not: a clear, honest difference to detect
            thumb = "up" if arms[user] == "B" else "down"
            services.feedback.rate(Feedback(response_id=turn.id, thumb=thumb, user="judge"))
    explicit = services.chat.complete(
        ChatRequest(prompt="hi", user=users[0], model=services.models.name, options=GREEDY)
    ).turn
    results = client.get(f"/api/v1/ab-tests/{experiment_id}/results").json()
    a, b = results["arms"]["A"], results["arms"]["B"]
    assert a["turns"] + b["turns"] == 24  # the explicit choice is outside the experiment
    assert explicit.adapter_version is None
    assert a["rated_turns"] == a["turns"] and a["thumbs_up_rate"] == 0.0
    assert b["thumbs_up_rate"] == 1.0 and b["mean_latency_ms"] > 0
    assert results["tests"]["thumbs_fisher"]["p_value"] < 0.05
    assert results["tests"]["thumbs_z"]["p_value"] < 0.05
    assert results["recommendation"] == "deploy B"
    assert results["experiment"]["status"] == "running"
    stopped = client.post(f"/api/v1/ab-tests/{experiment_id}/stop").json()
    assert stopped["status"] == "ended"
    after = services.chat.complete(ChatRequest(prompt="hi", user=users[0], options=GREEDY))
    assert after.turn.adapter_version is None  # nothing runs now: the base model serves


def test_stars_metric_and_end_condition(services, tuned):
    experiment = services.experiments.create(
        ExperimentSpec(name="stars", model_a="base", model_b=tuned, end_rated_turns=4,
                       metric="stars")
    )
    for i in range(4):
        assignment = services.experiments.assign(f"person{i}")
        assert assignment is not None and assignment.experiment_id == experiment.id
        turn = services.chat.complete(
            ChatRequest(prompt="Hello", user=f"person{i}", options=GREEDY)
        ).turn
        services.feedback.rate(Feedback(response_id=turn.id, rating=4))
    results = services.experiments.results(experiment.id)
    assert results["experiment"]["status"] == "ended"  # 4 rated turns reached
    assert results["primary_test"] == "stars_mann_whitney"
    assert results["recommendation"] == "keep A"  # equal stars: no evidence for B
    assert services.experiments.assign("person0") is None
    with pytest.raises(NotFound):
        services.experiments.results(uuid.uuid4().hex)


def test_unknown_models_and_parallel_experiments_are_refused(services, tuned):
    with pytest.raises(NotFound):
        services.experiments.create(
            ExperimentSpec(name="x", model_a="base", model_b="ghost", duration_hours=1)
        )
    services.experiments.create(
        ExperimentSpec(name="x", model_a="base", model_b=tuned, duration_hours=1)
    )
    with pytest.raises(Conflict):
        services.experiments.create(
            ExperimentSpec(name="y", model_a="base", model_b=tuned, duration_hours=1)
        )


def test_an_experiment_whose_model_is_gone_ends_instead_of_breaking_chat(services, tuned):
    experiment = services.experiments.create(
        ExperimentSpec(name="x", model_a="base", model_b=tuned, duration_hours=1)
    )
    services.registry.delete(tuned)
    # someone served the surviving arm A still ends it: its comparison means nothing now
    user = next(u for u in map(str, range(100)) if arm_for(experiment.id, u, 0.5) == "A")
    reply = services.chat.complete(ChatRequest(prompt="Hello", user=user, options=GREEDY))
    assert reply.turn.adapter_version is None
    assert services.experiments.get(experiment.id).status == "ended"
