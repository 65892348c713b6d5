"""Statistics against known values: scipy, hand-computed intervals, a hand-made tournament."""

from __future__ import annotations

import math

import numpy as np
import pytest
from scipy import stats as scipy_stats

from core.comparison.stats import (
    bradley_terry,
    bradley_terry_ratings,
    fisher_exact_test,
    mann_whitney_test,
    sign_test,
    two_proportion_z_test,
    wilson_interval,
)
from core.errors import InvalidInput


def test_wilson_interval_matches_hand_computation():
    # 8 of 10, z = 1.96: centre = (0.8 + 0.19208) / 1.38416, half = 1.96 * sqrt(0.016 + 0.009604)
    # / 1.38416; worked by hand to four places: (0.4902, 0.9433)
    interval = wilson_interval(8, 10)
    assert interval.low == pytest.approx(0.4902, abs=1e-4)
    assert interval.high == pytest.approx(0.9433, abs=1e-4)


def test_wilson_interval_edges():
    assert wilson_interval(0, 0).low == 0.0 and wilson_interval(0, 0).high == 1.0
    zero = wilson_interval(0, 20)
    assert zero.low == 0.0 and 0.1 < zero.high < 0.2  # 0.1611 by the formula
    assert wilson_interval(20, 20).high == 1.0
    with pytest.raises(InvalidInput):
        wilson_interval(5, 3)


def test_sign_test_matches_scipy_and_excludes_ties():
    result = sign_test(15, 5)
    assert result.p_value == pytest.approx(scipy_stats.binomtest(15, 20, 0.5).pvalue)
    assert result.p_value == pytest.approx(0.041389, abs=1e-6)  # 2 * P(X >= 15), X ~ B(20, .5)
    assert sign_test(0, 0).p_value is None
    assert sign_test(3, 3).p_value == pytest.approx(1.0)


def test_two_proportion_z_test_known_value():
    # 30/50 vs 20/50: pooled 0.5, se = sqrt(0.25 * 0.04) = 0.1, z = (0.4 - 0.6) / 0.1 = -2
    result = two_proportion_z_test(30, 50, 20, 50)
    assert result.statistic == pytest.approx(-2.0)
    assert result.p_value == pytest.approx(2 * scipy_stats.norm.sf(2.0))
    assert two_proportion_z_test(0, 0, 1, 2).p_value is None


def test_fisher_and_mann_whitney_match_scipy():
    fisher = fisher_exact_test(8, 10, 2, 10)
    assert fisher.p_value == pytest.approx(scipy_stats.fisher_exact([[8, 2], [2, 8]]).pvalue)
    a, b = [5, 4, 5, 4, 5, 3], [2, 3, 1, 2, 3, 2]
    mw = mann_whitney_test(a, b)
    assert mw.p_value == pytest.approx(scipy_stats.mannwhitneyu(a, b).pvalue)
    assert mann_whitney_test([4, 4], [4, 4]).p_value == 1.0
    assert mann_whitney_test([], [1]).p_value is None


def test_bradley_terry_two_players_recovers_odds():
    # With only two players, the maximum-likelihood strength ratio is wins / losses.
    wins = np.array([[0, 30], [10, 0]])
    scores = bradley_terry(["a", "b"], wins, prior=0.0)
    assert math.exp(scores[0] - scores[1]) == pytest.approx(3.0, rel=1e-6)


def test_bradley_terry_hand_made_tournament():
    # A beats B 3-1, B beats C 3-1, A beats C 4-0: the order must be A > B > C, and at the
    # maximum likelihood each player's expected wins equal its actual wins.
    wins = np.array([[0, 3, 4], [1, 0, 3], [0, 1, 0]], dtype=float)
    scores = bradley_terry(["A", "B", "C"], wins, prior=0.0, tolerance=1e-13, iterations=20000)
    assert scores[0] > scores[1] > scores[2]
    strength = np.exp(scores)
    games = wins + wins.T
    expected = (games * strength[:, None] / (strength[:, None] + strength[None, :])).sum(axis=1)
    assert expected == pytest.approx(wins.sum(axis=1), abs=1e-6)


def test_bradley_terry_ratings_intervals_cover_points():
    outcomes = [(0, 1)] * 6 + [(1, 0)] * 2 + [(1, 2)] * 5 + [(2, 1)] * 2 + [(0, 2)] * 4
    ratings = bradley_terry_ratings(["A", "B", "C"], outcomes)
    assert [r.model for r in ratings] == ["A", "B", "C"]
    for rating in ratings:
        assert rating.low < rating.score < rating.high
    assert {r.model: r.games for r in ratings} == {"A": 12, "B": 15, "C": 11}
    with pytest.raises(InvalidInput):
        bradley_terry_ratings(["A"], [])


def test_wilson_continuity_corrected_matches_its_defining_equation():
    # Newcombe's bounds solve |p - bound| - 1/(2n) = z * sqrt(bound (1 - bound) / n).
    n, p = 10, 0.8
    interval = wilson_interval(8, n, continuity=True)
    for bound in (interval.low, interval.high):
        gap = abs(p - bound) - 1 / (2 * n)
        assert gap == pytest.approx(1.959964 * math.sqrt(bound * (1 - bound) / n), rel=1e-5)
    plain = wilson_interval(8, n)
    assert interval.low < plain.low and interval.high > plain.high  # the correction widens it


def test_intervals_are_wide_after_one_decisive_vote():
    one = wilson_interval(1, 1, continuity=True)
    assert one.high == 1.0 and one.low < 0.1  # 0.055: one vote says almost nothing
    ratings = {r.model: r for r in bradley_terry_ratings(["A", "B"], [(0, 1)])}
    assert ratings["A"].score > ratings["B"].score
    for rating in ratings.values():
        assert rating.high - rating.low > 2.0  # log-strength: odds anywhere in ~1:7 to 7:1
        assert rating.low < 0 < rating.high  # the sign is not settled by one vote


def test_bradley_terry_intervals_narrow_with_games_as_the_binomial_does():
    def width(times):
        outcomes = [(0, 1)] * (3 * times) + [(1, 0)] * times
        return {r.model: r.high - r.low for r in bradley_terry_ratings(["A", "B"], outcomes)}["A"]

    # For two models the rating difference has variance 1 / (games p (1 - p)); each model's
    # centred rating is half of it, so its 95% interval is 2 * 1.96 / (2 sqrt(games p (1 - p))).
    assert width(100) == pytest.approx(1.96 / math.sqrt(400 * 0.75 * 0.25), rel=0.02)
    assert width(1) > 2.5 * width(10) and width(10) > 2.5 * width(100)  # ~sqrt(10) each
