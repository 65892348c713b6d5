"""Drift: quiet on a stable stream, alerts when ratings turn bad and prompts change topic."""

from __future__ import annotations

import itertools
import random

import pytest

from core.audit.drift import bernoulli_cusum
from core.errors import InvalidInput
from tests.rated_turns import add_turn, rate

TOPICS = {
    "cooking": (
        ("How long should I {v} {o}?", "What is the best way to {v} {o}?"),
        ("bake", "roast", "boil", "grill", "simmer"),
        ("a chicken", "bread dough", "potatoes", "salmon", "a vegetable soup", "rice"),
    ),
    "travel": (
        ("What should I pack to {v} {o}?", "Any tips to {v} {o} in spring?"),
        ("visit", "explore", "hike around", "fly to", "take a train through"),
        ("Japan", "the Alps", "Lisbon", "Iceland", "the Scottish highlands", "Patagonia"),
    ),
    "code": (
        ("How do I {v} {o} in Python?", "Why does my code fail to {v} {o}?"),
        ("sort", "parse", "reverse", "serialize", "merge"),
        ("a list of dicts", "a JSON file", "a CSV table", "two dataframes", "nested tuples"),
    ),
    "invoices": (
        ("How do I {v} {o}?", "Who must {v} {o} before the deadline?"),
        ("pay", "dispute", "file", "correct", "approve"),
        ("an overdue invoice", "the VAT return", "a supplier invoice", "a credit note"),
    ),
}
STABLE = ("cooking", "travel", "code")
WINDOWS = {"baseline": 100, "window": 40, "prompt_baseline": 100, "prompt_window": 40}


def prompt(rng: random.Random, topics) -> str:
    templates, verbs, objects = TOPICS[rng.choice(topics)]
    return rng.choice(templates).format(v=rng.choice(verbs), o=rng.choice(objects))


def add_rated_turns(services, rng, n, *, topics, up_rate, start, version=None) -> None:
    """n turns in time order; thumbs up with probability up_rate, stars to match."""
    for minute in range(start, start + n):
        turn = add_turn(services, prompt(rng, topics), "answer", minutes=minute,
                        adapter_version=version)
        good = rng.random() < up_rate
        stars = rng.choice((4, 5, 5)) if good else rng.choice((1, 2, 3))
        rate(services, turn, thumb="up" if good else "down", rating=stars)


def test_quiet_on_a_stable_stream_then_alerts_on_a_shift(services):
    rng = random.Random(7)
    add_rated_turns(services, rng, 140, topics=STABLE, up_rate=0.8, start=0)

    stable = services.drift.check(**WINDOWS)
    assert stable.alerts == []
    thumbs = stable.ratings["thumbs"]
    assert thumbs["tested"] and (thumbs["baseline_n"], thumbs["recent_n"]) == (100, 40)
    assert thumbs["p_value"] > 0.01
    assert stable.prompts["tested"] and stable.prompts["centroid_distance"] < 0.1

    add_rated_turns(services, rng, 40, topics=("invoices",), up_rate=0.3, start=140)
    shifted = services.drift.check(**WINDOWS)
    kinds = {alert.kind for alert in shifted.alerts}
    assert kinds == {"thumbs", "stars", "cusum", "prompt_centroid", "prompt_psi"}
    by_kind = {alert.kind: alert for alert in shifted.alerts}
    evidence = by_kind["thumbs"].evidence
    assert evidence["recent_mean"] < evidence["baseline_mean"] and evidence["p_value"] < 0.01
    assert by_kind["stars"].evidence["p_value"] < 0.01
    assert by_kind["prompt_centroid"].evidence["centroid_distance"] > 0.1
    new_topic = shifted.prompts["topics"][-1]  # the bin of prompts far from every old topic
    assert new_topic["example"] == "(new topic)" and new_topic["recent"] > 0.5
    assert "went from" in by_kind["prompt_psi"].message

    from ui.charts import rolling_figure, topics_figure
    from ui.tabs.monitor import alerts_markdown

    assert alerts_markdown(shifted).count("### ⚠️") == 5
    assert alerts_markdown(stable).startswith("✅ **No drift.**")
    figure = rolling_figure(shifted.ratings["thumbs"], title="t", y_title="rate")
    assert len(figure.data[0].y) == 140 and figure.layout.shapes  # the band and the window line
    assert len(topics_figure(shifted.prompts).data) == 2


def test_only_the_served_model_s_ratings_count(services):
    rng = random.Random(3)
    add_rated_turns(services, rng, 80, topics=STABLE, up_rate=0.9, start=0)
    # another adapter's bad answers are not the serving model's drift
    add_rated_turns(services, rng, 40, topics=STABLE, up_rate=0.1, start=80, version="other")
    quiet = services.drift.check(baseline=60, window=20, prompt_window=500)
    assert quiet.alerts == [] and quiet.ratings["model"] == "base"
    assert quiet.ratings["thumbs"]["recent_n"] == 20
    assert quiet.prompts == {"baseline_n": 0, "recent_n": 120, "tested": False}

    add_rated_turns(services, rng, 30, topics=STABLE, up_rate=0.1, start=120)
    report = services.drift.check(baseline=60, window=30, prompt_window=500)
    assert {"thumbs", "cusum"} <= {alert.kind for alert in report.alerts}


def test_too_few_ratings_are_not_tested(services):
    rng = random.Random(1)
    add_rated_turns(services, rng, 10, topics=STABLE, up_rate=0.0, start=0)
    report = services.drift.check()
    assert report.alerts == []
    assert not report.ratings["thumbs"]["tested"] and not report.prompts["tested"]


def test_cusum_stays_at_zero_while_all_is_well_and_climbs_on_thumbs_down():
    assert bernoulli_cusum([1.0] * 30, 0.8, shift=0.2) == [0.0] * 30
    path = bernoulli_cusum([0.0] * 10, 0.8, shift=0.2)
    assert all(b > a for a, b in itertools.pairwise(path))


@pytest.mark.parametrize("options", [{"window": 1}, {"alpha": 2.0}, {"colour": "red"}])
def test_bad_options_are_refused(services, options):
    with pytest.raises(InvalidInput):
        services.drift.check(**options)


def test_drift_api(client, services):
    rng = random.Random(2)
    add_rated_turns(services, rng, 5, topics=STABLE, up_rate=0.5, start=0)
    response = client.get("/api/v1/drift", params={"window": 3, "baseline": 10})
    assert response.status_code == 200, response.text
    body = response.json()
    assert body["alerts"] == [] and body["ratings"]["thumbs"]["recent_n"] == 3
    assert body["ratings"]["model"] == "base" and body["prompts"]["tested"] is False

    bad = client.get("/api/v1/drift", params={"window": 1})
    assert bad.status_code == 400 and "window" in bad.json()["error"]
