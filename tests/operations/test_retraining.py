"""Automated retraining on a tiny real model: when the policy fires, a full cycle, restarts."""

from __future__ import annotations

from datetime import datetime, timedelta
from pathlib import Path

import pytest

from core.errors import InvalidInput
from core.feedback.turn_filter import TurnFilter
from core.operations.retraining import RetrainingPolicy
from core.training.lora import DEBUG_HOLD_ENV
from tests.rated_turns import add_turn, rate
from tests.training_helpers import PAIRS, wait_for

FAST = {"learning_rate": 1e-2, "batch_size": 2, "grad_accumulation": 1, "warmup_ratio": 0.0,
        "max_steps": 2}


def policy(**changes) -> RetrainingPolicy:
    base = dict(enabled=True, min_new_examples=3, min_interval_hours=1.0, training=FAST,
                comparison_prompts=2, eval_items=2, max_new_tokens=4)
    return RetrainingPolicy(**{**base, **changes})


def add_examples(services, count: int, *, start: int = 0) -> list[str]:
    """`count` distinct five-star turns (each one new curated sft example)."""
    ids = []
    for n in range(start, start + count):
        question, answer = PAIRS[n % len(PAIRS)]
        turn = add_turn(services, f"{question} ({n})", f"{answer} ({n})", minutes=n)
        rate(services, turn, rating=5)
        ids.append(turn)
    return ids


def test_policy_is_validated_and_round_trips():
    with pytest.raises(InvalidInput, match="min_new_examples"):
        RetrainingPolicy(min_new_examples=0)
    with pytest.raises(InvalidInput, match="follow_up"):
        RetrainingPolicy(follow_up="promote")
    with pytest.raises(InvalidInput, match="chooses init_adapter"):
        RetrainingPolicy(training={"init_adapter": "x"})
    with pytest.raises(InvalidInput, match="unknown training option"):
        RetrainingPolicy(training={"rank": 4})
    with pytest.raises(InvalidInput, match="unknown retraining option"):
        RetrainingPolicy.from_dict({"enabeld": True})
    assert RetrainingPolicy().enabled is False
    rich = policy(selection=TurnFilter(tags=("good",), date_from=datetime(2026, 1, 1)))
    assert RetrainingPolicy.from_dict(rich.to_dict()) == rich


def test_policy_fires_exactly_when_its_conditions_hold(services):
    retraining = services.retraining
    retraining.poll_interval = 3600  # only this test's check() calls act, never the loop
    now = datetime.now()
    add_examples(services, 3)
    assert retraining.check(now) is None  # off by default
    assert retraining.decide(now)[1] == "automated retraining is off"

    retraining.set_policy(policy(min_new_examples=4), user="ada")
    assert retraining.check(now) is None
    assert "3 new curated example(s)" in retraining.decide(now)[1]

    low = add_turn(services, "A question nobody liked", "A poor answer", minutes=99)
    rate(services, low, rating=2)  # below min_rating: not a curated sft example
    assert retraining.check(now) is None

    fourth = add_examples(services, 1, start=3)
    action = retraining.check(now)
    assert action is not None and len(action.new_example_ids) == 4
    assert action.incumbent == "base" and action.parent_adapter is None
    assert action.new_example_ids == tuple(retraining.candidate_ids(retraining.policy()))

    # Curation decides what counts: an excluded turn or a tag filter changes the count at once.
    curation = services.datasets.curation
    curation.set_include(TurnFilter(response_ids=tuple(fourth)), False)
    assert retraining.check(now) is None
    curation.set_include(TurnFilter(response_ids=tuple(fourth)), True)
    retraining.set_policy(policy(min_new_examples=1, selection=TurnFilter(tags=("good",))))
    assert retraining.check(now) is None
    curation.add_tags(TurnFilter(response_ids=tuple(fourth)), ["good"])
    assert len(retraining.check(now).new_example_ids) == 1
    log = retraining.actions()
    assert [entry["action"] for entry in log] == ["policy", "policy"]
    assert "ada turned automated retraining on" in log[-1]["reason"]
    assert "changed min_new_examples, selection" in log[0]["reason"]


def cycle_done(retraining, now, *, after: str | None = None):
    """The latest cycle once closed (and not `after`): the service's own background loop may
    finish it between two of our steps, so its return value alone can miss the end."""
    retraining.step(now)
    latest = next(iter(retraining.cycles(limit=1)), None)
    return latest if latest is not None and not latest.open and latest.id != after else None


def test_full_cycle_reaches_comparison_and_never_repeats_the_same_data(services):
    retraining = services.retraining
    retraining.set_policy(policy(), user="ada")
    start = datetime.now()
    add_examples(services, 4)

    cycle = wait_for(lambda: cycle_done(retraining, start), every=0.5)
    assert cycle.state == "comparison_opened", cycle.error
    job = services.training.get(cycle.job_id)
    assert job.status == "completed" and job.user_id == "automation"
    assert cycle.model_id == job.model_id and cycle.incumbent == "base"
    dataset = services.datasets.get(cycle.dataset_id)
    assert len(dataset.train) + len(dataset.validation) == 4
    evaluations = cycle.evaluations
    assert evaluations["candidate"]["model"] == cycle.model_id
    assert evaluations["incumbent"]["model"] == "base"
    assert services.evaluations.get(evaluations["candidate"]["id"])["status"] == "done"
    assert len(cycle.comparison_ids) == 2
    for comparison_id in cycle.comparison_ids:
        comparison = services.arena.store.get_comparison(comparison_id)
        assert comparison.blind
        assert {comparison.left_model, comparison.right_model} == {cycle.model_id, "base"}
    steps = [a["action"] for a in retraining.actions() if a["cycle_id"] == cycle.id][::-1]
    assert steps == ["started", "dataset_built", "job_submitted", "job_finished", "evaluated",
                     "comparison_opened"]
    assert all(a["reason"] for a in retraining.actions())
    assert services.registry.active() is None  # the automation never promotes
    job = services.jobs.get(cycle.id)  # the cycle on the one job list, its stages as progress
    assert (job.kind, job.status, job.user_id) == ("retraining", "succeeded", "automation")
    assert job.result["model_id"] == cycle.model_id
    assert services.jobs.get(cycle.job_id).kind == "training"

    pair = retraining.next_blind_pair("bob")
    assert pair["comparison_id"] == cycle.comparison_ids[0] and pair["left"] is not None
    services.arena.vote(pair["comparison_id"], "left", voter="bob")
    assert retraining.next_blind_pair("bob")["comparison_id"] == cycle.comparison_ids[1]
    assert "not promotable yet" in retraining.evidence(cycle)

    # The same data never fires again, however long we wait.
    later = start + timedelta(hours=5)
    assert retraining.check(later) is None
    assert "0 new curated example(s)" in retraining.decide(later)[1]
    assert retraining.step(later) is None

    # New data: not within the interval; then yes, with exactly the new examples.
    add_examples(services, 3, start=10)
    assert retraining.check(start + timedelta(minutes=30)) is None
    assert "next run allowed after" in retraining.decide(start + timedelta(minutes=30))[1]
    action = retraining.check(later)
    assert action is not None and len(action.new_example_ids) == 3
    assert not set(action.new_example_ids) & {row["id"] for row in dataset.train}

    # People promoted the new adapter: the next cycle continues it (incremental update).
    services.registry.promote(cycle.model_id, user="bob")
    second = wait_for(lambda: cycle_done(retraining, later, after=cycle.id), every=0.5)
    assert second.id != cycle.id and second.state == "comparison_opened", second.error
    assert second.parent_adapter == second.incumbent == cycle.model_id
    spec = services.training.get(second.job_id).spec
    parent = services.registry.get(cycle.model_id)
    assert spec["init_adapter"] == str(Path(parent.adapter_dir).resolve())
    assert spec["learning_rate"] == FAST["learning_rate"] / 10
    assert services.registry.get(second.model_id).lineage["parent_model"] == cycle.model_id
    assert services.registry.active().id == cycle.model_id  # still what people promoted


def test_restart_continues_the_cycle_and_experiment_follow_up(settings):
    from core.services import build_services

    first = build_services(settings)
    try:
        first.retraining.poll_interval = 3600  # the cycle starts by run_now, not by the loop
        first.retraining.set_policy(policy(follow_up="experiment"), user="ada")
        add_examples(first, 4)
        outcome = first.retraining.run_now(datetime.now(), user="ada")
        assert outcome["started"] and outcome["cycle"].state == "training"
        assert "ada asked" in first.retraining.cycles()[0].reason
        job_id = outcome["cycle"].job_id
    finally:
        first.close()  # the worker keeps running; the cycle stays open in the store

    second = build_services(settings)  # a restarted app: its loop picks the cycle up
    try:
        cycle = wait_for(lambda: (c := second.retraining.cycles()[0]).state
                         in ("comparison_opened", "failed") and c, every=0.5)
        assert cycle.state == "comparison_opened", cycle.error
        assert cycle.job_id == job_id and len(second.training.list()) == 1
        assert len(second.datasets.list()) == 1
        running = second.experiments.running()
        assert running.id == cycle.experiment_id
        assert (running.model_a, running.model_b) == ("base", cycle.model_id)
        assert "keep collecting" in second.retraining.evidence(cycle)
        assert second.retraining.run_now(datetime.now())["started"] is False
    finally:
        second.training.close(stop_workers=True)
        second.close()


def test_a_cycle_cancelled_on_the_job_list_stops_its_training_and_frees_its_examples(
        client, services, monkeypatch):
    monkeypatch.setenv(DEBUG_HOLD_ENV, "1")  # the worker waits after step 1 to be stopped
    retraining = services.retraining
    retraining.poll_interval = 3600  # only run_now and cancel act, never the loop
    retraining.set_policy(policy(enabled=False), user="ada")
    add_examples(services, 4)
    cycle = retraining.run_now(datetime.now(), user="ada")["cycle"]
    assert cycle.state == "training"
    wait_for(lambda: services.training.get(cycle.job_id).step >= 1)

    cancelled = client.post(f"/api/v1/jobs/{cycle.id}/cancel")  # the one route for every kind
    assert cancelled.status_code == 200, cancelled.text
    assert (cancelled.json()["kind"], cancelled.json()["status"]) == ("retraining", "cancelled")
    assert cancelled.json()["message"] == "cancelled at stage 'training'"
    stopped = wait_for(lambda: (job := services.training.get(cycle.job_id)).status
                       in ("stopped", "failed", "completed") and job)
    assert stopped.status == "stopped", stopped.error  # with its checkpoint, resumable by hand
    assert retraining.cycles()[0].state == "cancelled"
    assert [a["action"] for a in retraining.actions()][0] == "cancelled"
    assert len(retraining.new_example_ids(retraining.policy())) == 4  # free for the next cycle
    assert client.post(f"/api/v1/jobs/{cycle.id}/cancel").status_code == 409

    again = retraining.run_now(datetime.now(), user="ada")  # within the interval: a person asked
    assert again["started"], again["reason"]
    assert again["cycle"].job_id != cycle.job_id
    assert retraining.cancel(again["cycle"].id).state == "cancelled"
    assert services.training.get(again["cycle"].job_id).status in ("stopped", "stopping")
    services.training.close(stop_workers=True)
