"""Quality checks on rated turns, with agreement measured against published values."""

from __future__ import annotations

import math

import pytest

from core.feedback.turn_filter import TurnFilter
from tests.rated_turns import add_turn, rate

# Krippendorff (2011), "Computing Krippendorff's Alpha-Reliability", example C:
# 4 observers x 12 units, None = missing; published alpha: nominal 0.743, ordinal 0.815.
KRIPPENDORFF_EXAMPLE = [
    [1, 2, 3, 3, 2, 1, 4, 1, 2, None, None, None],
    [1, 2, 3, 3, 2, 2, 4, 1, 2, 5, None, 3],
    [None, 3, 3, 3, 2, 3, 4, 2, 2, 5, 1, None],
    [1, 2, 3, 3, 2, 4, 4, 1, 2, 5, 1, None],
]


def report(services, **fields):
    return services.quality.report(TurnFilter(**fields))


def check(result, name):
    return next(c for c in result.checks if c.name == name)


def test_cohens_kappa_matches_the_textbook_value(services):
    # 50 answers: both say good 20, A good/B bad 5, A bad/B good 10, both bad 15 -> kappa 0.4
    pairs = [(5, 5)] * 20 + [(5, 1)] * 5 + [(1, 5)] * 10 + [(1, 1)] * 15
    for n, (a, b) in enumerate(pairs):
        turn = add_turn(services, f"prompt number {n}", f"a long enough answer {n}", minutes=n)
        rate(services, turn, "ann", rating=a)
        rate(services, turn, "bob", rating=b)
    agreement = report(services).agreement
    assert agreement.raters == ["ann", "bob"] and agreement.items == 50
    assert agreement.kappa == pytest.approx(0.4)
    assert agreement.alpha is not None and -1 <= agreement.alpha <= 1


def test_kappa_near_zero_beside_a_high_alpha_comes_with_its_explanation(services):
    # Raters one star apart (4 vs 5, 1 vs 2) and some exact matches: unweighted kappa counts a
    # near miss as a full disagreement (0.006), ordinal alpha as almost agreeing (0.71).
    pairs = [(5, 4), (4, 5), (1, 2), (2, 1)] * 4 + [(5, 5), (1, 1)] * 3
    for n, (a, b) in enumerate(pairs):
        turn = add_turn(services, f"prompt number {n}", f"a long enough answer {n}", minutes=n)
        rate(services, turn, "ann", rating=a)
        rate(services, turn, "bob", rating=b)
    agreement = report(services).agreement
    assert agreement.kappa == pytest.approx(0.006, abs=0.001)
    assert agreement.alpha == pytest.approx(0.711, abs=0.001)
    assert "4 vs 5" in agreement.explanation and "prevalence paradox" in agreement.explanation


def test_krippendorffs_alpha_matches_the_published_example(services):
    units = [add_turn(services, f"unit {n}", f"answer {n}", minutes=n) for n in range(12)]
    for rater, values in zip(("a", "b", "c", "d"), KRIPPENDORFF_EXAMPLE, strict=True):
        for unit, value in zip(units, values, strict=True):
            if value is not None:
                rate(services, unit, rater, rating=value)
    agreement = report(services).agreement
    assert len(agreement.raters) == 4 and agreement.kappa is None
    # unit 12 has one value only and carries no pairable information
    assert agreement.items == 11
    assert agreement.alpha == pytest.approx(0.815, abs=5e-4)


def test_agreement_on_thumbs_is_nominal(services):
    for n, (a, b) in enumerate([("up", "up"), ("down", "down"), ("up", "down"), ("up", "up")]):
        turn = add_turn(services, f"q{n}", f"answer number {n}")
        rate(services, turn, "ann", thumb=a)
        rate(services, turn, "bob", thumb=b)
    agreement = services.quality.report(TurnFilter(), field="thumb").agreement
    # 3 of 4 agree; chance agreement 0.75*0.5 + 0.25*0.5 = 0.5 -> kappa 0.5
    assert agreement.kappa == pytest.approx(0.5)


def test_short_answers_duplicates_and_conflicts_are_flagged(services):
    empty = add_turn(services, "Say something", "   ")
    short = add_turn(services, "Name a colour", "Blue.")
    fine = add_turn(services, "What is the capital of France?", "The capital is Paris.")
    same = add_turn(services, "what is the capital of france", "Paris is the capital.")
    near = add_turn(services, "What is the capitol of France??", "It is Paris, France.")
    other = add_turn(services, "How do magnets work?", "Aligned electron spins attract.")
    for turn in (empty, short, fine, same, near, other):
        rate(services, turn, "ann", rating=4)
    rate(services, other, "bob", rating=1)  # 3 stars apart from ann
    rate(services, fine, "bob", thumb="down")
    rate(services, fine, "cy", thumb="up")  # opposite thumbs

    result = report(services)
    assert result.rows_checked == 9
    assert set(check(result, "short answers").rows["response_id"]) == {empty, short}

    dupes = check(result, "duplicate prompts").rows
    assert set(dupes["response_id"]) == {fine, same, near}
    assert dupes["group"].nunique() == 1
    match = dict(zip(dupes["response_id"], dupes["match"], strict=True))
    assert match == {fine: "exact", same: "exact", near: "near"}

    conflicts = check(result, "conflicting ratings").rows
    assert set(conflicts["response_id"]) == {other, fine}


def test_a_rater_who_disagrees_with_everyone_is_an_outlier(services):
    for n in range(6):
        turn = add_turn(services, f"question {n}", f"answer number {n}")
        for rater in ("ann", "bob", "cy"):
            rate(services, turn, rater, rating=4 + n % 2)
        rate(services, turn, "contrarian", rating=1 + n % 2)
    table = check(report(services), "rater outliers").rows
    flagged = set(table.loc[table["flagged"], "rater"])
    assert flagged == {"contrarian"}
    first = table.iloc[0]
    assert first["rater"] == "contrarian" and first["mean_abs_deviation"] >= 2.5


def test_quality_of_an_empty_selection_and_over_http(client, services):
    empty = report(services)
    assert empty.rows_checked == 0 and empty.checks == []
    assert "needs" in empty.agreement.note
    first = add_turn(services, "Hi", "Hello there friend.")
    second = add_turn(services, "Bye", "Goodbye.")
    for turn, (a, b) in ((first, (5, 1)), (second, (2, 2))):
        rate(services, turn, "ann", rating=a)
        rate(services, turn, "bob", rating=b)
    response = client.get("/api/v1/quality")
    assert response.status_code == 200, response.text
    body = response.json()
    names = [c["name"] for c in body["checks"]]
    assert names == ["short answers", "duplicate prompts", "conflicting ratings", "rater outliers"]
    conflicts = body["checks"][2]["rows"]
    assert {r["response_id"] for r in conflicts} == {first}
    assert math.isfinite(body["agreement"]["kappa"])
