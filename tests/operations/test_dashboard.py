"""The dashboard summary over real stored data, and the retraining routes, over real HTTP."""

from __future__ import annotations

import pytest

from core.comparison.experiments import ExperimentSpec
from core.errors import InvalidInput
from tests.rated_turns import add_turn, rate
from tests.training_helpers import chat_rows, wait_final

FAST = {"learning_rate": 1e-2, "batch_size": 2, "grad_accumulation": 1, "warmup_ratio": 0.0,
        "max_steps": 1}


def upload(client, *files):
    return client.post(
        "/api/v1/documents",
        files=[("files", (name, data, "text/plain")) for name, data in files],
    )


def test_summary_counts_match_the_stored_data(client, services):
    assert upload(client, ("a.md", b"# A\n\nShipping takes five days."),
                  ("b.txt", b"Returns are free within thirty days.")).json()["ingested"] == 2
    turns = [add_turn(services, f"question {n}", f"answer {n}", minutes=n) for n in range(5)]
    rate(services, turns[0], rating=5, thumb="up")
    rate(services, turns[0], rater="bob", rating=3)
    rate(services, turns[1], thumb="up")
    rate(services, turns[2], thumb="down", correction="a better answer")
    rate(services, turns[3], rating=4, thumb="up")

    job = services.training.submit(services.training.make_spec(FAST), train=chat_rows(1))
    job = wait_final(services.training, job.id)
    assert job.status == "completed", job.error
    services.registry.promote(job.model_id, user="ada")
    services.experiments.create(ExperimentSpec(name="try it", model_a="base",
                                               model_b=job.model_id, end_rated_turns=50))

    summary = client.get("/api/v1/dashboard").json()
    assert summary["documents"]["documents"] == 2
    assert summary["documents"]["chunks"] == services.documents.store.count_chunks() > 0
    feedback = summary["feedback"]
    assert (feedback["turns"], feedback["ratings"], feedback["rated_turns"]) == (5, 5, 4)
    assert (feedback["thumbs_up"], feedback["thumbs_down"], feedback["corrections"]) == (3, 1, 1)
    assert feedback["thumbs_up_rate"] == 3 / 4
    assert feedback["mean_stars"] == (5 + 3 + 4) / 3
    per_day = summary["ratings_per_day"]
    assert sum(day["ratings"] for day in per_day) == 5
    assert sum(day["thumbs_up"] for day in per_day) == 3
    assert sum(day["turns"] for day in summary["turns_per_day"]) == 5

    assert summary["serving"]["adapter"] == job.model_id
    assert summary["serving"]["since"] is not None
    assert [(v["action"], v["model_id"]) for v in summary["versions"]] == [
        ("promote", job.model_id)
    ]
    assert summary["runs"]["total"] == 1
    assert summary["runs"]["by_status"] == {"completed": 1}
    assert summary["runs"]["recent"][0]["id"] == job.id
    [experiment] = summary["experiments"]
    assert (experiment["name"], experiment["model_b"]) == ("try it", job.model_id)
    assert set(experiment["arms"]) == {"A", "B"}
    assert summary["drift"]["available"] and isinstance(summary["drift"]["alerts"], list)
    assert summary["automation"]["enabled"] is False

    services.registry.rollback(user="ada")
    summary = services.dashboard.summary()
    assert summary["serving"]["adapter"] is None and summary["serving"]["model"] == "base"
    assert [v["action"] for v in summary["versions"]] == ["rollback", "promote"]


def test_retraining_routes(client, services):
    policy = client.get("/api/v1/retraining/policy").json()
    assert policy["enabled"] is False and policy["follow_up"] == "blind"

    bad = client.put("/api/v1/retraining/policy", json={"min_new_examples": 0})
    assert bad.status_code == 400 and "min_new_examples" in bad.json()["error"]
    bad = client.put("/api/v1/retraining/policy", json={"training": {"init_adapter": "x"}})
    assert bad.status_code == 400
    assert client.put("/api/v1/retraining/policy", json={"bogus": 1}).status_code == 422
    assert client.get("/api/v1/retraining/policy").json() == policy  # nothing was lost

    changed = client.put(
        "/api/v1/retraining/policy",
        json={"min_new_examples": 2, "selection": {"tags": ["good"]}, "user": "ada"},
    ).json()
    assert changed["min_new_examples"] == 2 and changed["selection"] == {"tags": ["good"]}
    assert changed["enabled"] is False  # fields left out keep their value

    turn = add_turn(services, "What is two plus two?", "Four.")
    rate(services, turn, rating=5, tags=["good"])
    outcome = client.post("/api/v1/retraining/run", json={"user": "ada"}).json()
    assert outcome["started"] is False and outcome["cycle"] is None
    assert "1 new curated example(s)" in outcome["reason"]

    actions = client.get("/api/v1/retraining/actions").json()
    assert actions[0]["action"] == "policy" and "ada changed" in actions[0]["reason"]
    assert client.get("/api/v1/retraining/cycles").json() == []
    automation = client.get("/api/v1/dashboard").json()["automation"]
    assert automation["actions"][0]["reason"] == actions[0]["reason"]


def test_dashboard_and_automation_views(client, services):
    from ui.tabs.automation import make_policy, policy_values, state_views
    from ui.tabs.dashboard import views

    assert client.get("/").status_code == 200  # the page with both tabs builds and serves
    turn = add_turn(services, "What is two plus two?", "Four.")
    rate(services, turn, rating=5, thumb="up")
    overview, serving, chart, *_, automation, actions = views(services)
    assert "**Turns** 1" in overview and "thumbs-up 100%" in overview
    assert serving.set_index("")["value"]["serving"] == "base"
    assert list(chart.data[0].y) == [1] and list(chart.data[1].y) == [1.0]
    assert "automated retraining is off" in automation

    current = services.retraining.policy()
    values = policy_values(current)
    with pytest.raises(InvalidInput, match="not valid JSON"):
        make_policy(current, *values[:-1], "{epochs: 1}")
    changed = make_policy(current, True, 2, 0.5, 4, "good, great", "", "experiment", 3, 10, 0.3,
                          5, 16, '{"epochs": 1}')
    assert changed.selection.tags == ("good", "great") and changed.training == {"epochs": 1}
    services.retraining.set_policy(changed, user="ada")
    status, cycles, log = state_views(services)
    assert "is on" in status and "0 new curated example(s)" in status
    assert cycles.empty and log["action"].tolist() == ["policy"]
