"""Answer scores: a reference fact counts when it appears as whole words."""

from core.knowledge.general import load_general_set
from core.knowledge.scoring import fact_match, score_answer, token_f1


def test_fact_match_finds_the_fact_inside_a_longer_answer():
    assert fact_match("The capital of France is Paris.", "Paris")
    assert fact_match("It lasts 14 days, as the policy says.", "14 days")
    assert not fact_match("Parisians love it.", "Paris")  # whole words only
    assert not fact_match("It lasts 41 days.", "14 days")
    assert not fact_match("anything", "")


def test_score_answer_combines_match_and_token_f1():
    score = score_answer("Paris", "Paris")
    assert score.match and score.f1 == 1.0
    assert token_f1("the capital is Paris", "Paris") == 0.5


def test_the_general_set_ships_with_answers_and_aliases():
    items = load_general_set()
    assert len(items) >= 30
    assert len({item.question for item in items}) == len(items)
    seven = next(item for item in items if "days are there in a week" in item.question)
    assert seven.matches("There are 7 days.") and seven.matches("Seven.")
    assert not seven.matches("Six days.")
