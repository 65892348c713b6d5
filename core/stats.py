"""Statistics for comparisons: intervals, significance tests and Bradley-Terry ratings."""

from __future__ import annotations

import math
from collections.abc import Sequence
from dataclasses import dataclass

import numpy as np
from scipy import stats

from core.errors import InvalidInput

Z95 = 1.959963984540054  # the standard normal's 97.5% quantile


@dataclass(frozen=True)
class Interval:
    low: float
    high: float


@dataclass(frozen=True)
class TestResult:
    statistic: float | None
    p_value: float | None  # None when there is no data to test


def wilson_interval(successes: int, trials: int, *, z: float = Z95) -> Interval:
    """Wilson score interval for a proportion; (0, 1) when there are no trials."""
    if not 0 <= successes <= trials:
        raise InvalidInput(f"need 0 <= successes <= trials, got {successes} of {trials}")
    if trials == 0:
        return Interval(0.0, 1.0)
    p = successes / trials
    denominator = 1 + z**2 / trials
    centre = (p + z**2 / (2 * trials)) / denominator
    half = z * math.sqrt(p * (1 - p) / trials + z**2 / (4 * trials**2)) / denominator
    return Interval(max(0.0, centre - half), min(1.0, centre + half))


def sign_test(wins: int, losses: int) -> TestResult:
    """Two-sided exact binomial (sign) test of wins against losses; ties are left out."""
    n = wins + losses
    if n == 0:
        return TestResult(None, None)
    result = stats.binomtest(wins, n, 0.5, alternative="two-sided")
    return TestResult(float(wins), float(result.pvalue))


def two_proportion_z_test(success_a: int, n_a: int, success_b: int, n_b: int) -> TestResult:
    """Pooled two-sided z-test for the difference of two proportions (B minus A)."""
    if n_a == 0 or n_b == 0:
        return TestResult(None, None)
    pooled = (success_a + success_b) / (n_a + n_b)
    variance = pooled * (1 - pooled) * (1 / n_a + 1 / n_b)
    if variance == 0:
        return TestResult(0.0, 1.0)
    z = (success_b / n_b - success_a / n_a) / math.sqrt(variance)
    return TestResult(z, float(2 * stats.norm.sf(abs(z))))


def fisher_exact_test(success_a: int, n_a: int, success_b: int, n_b: int) -> TestResult:
    """Fisher's exact test on the 2x2 table of successes and failures per arm."""
    if n_a == 0 or n_b == 0:
        return TestResult(None, None)
    table = [[success_a, n_a - success_a], [success_b, n_b - success_b]]
    result = stats.fisher_exact(table, alternative="two-sided")
    odds = float(result.statistic)
    return TestResult(odds if math.isfinite(odds) else None, float(result.pvalue))


def mann_whitney_test(a: Sequence[float], b: Sequence[float]) -> TestResult:
    """Two-sided Mann-Whitney U test (e.g. star ratings of two arms)."""
    if not a or not b:
        return TestResult(None, None)
    if len(set(a) | set(b)) == 1:  # all values equal: no evidence of a difference
        return TestResult(len(a) * len(b) / 2, 1.0)
    result = stats.mannwhitneyu(list(a), list(b), alternative="two-sided")
    return TestResult(float(result.statistic), float(result.pvalue))


@dataclass(frozen=True)
class Rating:
    model: str
    score: float  # log-strength, centred so the mean over models is 0
    low: float
    high: float
    games: int


def bradley_terry(
    models: Sequence[str],
    wins: np.ndarray,
    *,
    iterations: int = 1000,
    tolerance: float = 1e-10,
    prior: float = 0.01,
) -> np.ndarray:
    """Strengths by the MM algorithm (Hunter 2004); wins[i, j] = times i beat j.

    A tiny symmetric pseudo-count `prior` keeps unbeaten or winless models finite.
    Returns log-strengths centred on zero.
    """
    n = len(models)
    w = np.asarray(wins, dtype=float) + prior * (1 - np.eye(n))
    games = w + w.T
    total_wins = w.sum(axis=1)
    strength = np.ones(n)
    for _ in range(iterations):
        pair = strength[:, None] + strength[None, :]
        denominator = (games / pair).sum(axis=1)
        updated = total_wins / denominator
        updated /= np.exp(np.log(updated).mean())
        if np.max(np.abs(updated - strength)) < tolerance:
            strength = updated
            break
        strength = updated
    logs = np.log(strength)
    return logs - logs.mean()


def bradley_terry_ratings(
    models: Sequence[str],
    outcomes: Sequence[tuple[int, int]],
    *,
    samples: int = 200,
    seed: int = 0,
) -> list[Rating]:
    """Ratings with 95% bootstrap intervals; outcomes are (winner index, loser index)."""
    n = len(models)
    if n < 2:
        raise InvalidInput("Bradley-Terry ratings need at least two models")
    games = np.zeros(n, dtype=int)
    for winner, loser in outcomes:
        games[winner] += 1
        games[loser] += 1
    point = bradley_terry(models, _win_matrix(n, outcomes))
    low, high = point.copy(), point.copy()
    if outcomes:
        rng = np.random.default_rng(seed)
        picks = rng.integers(0, len(outcomes), (samples, len(outcomes)))
        draws = np.array(
            [
                bradley_terry(models, _win_matrix(n, [outcomes[i] for i in row]), iterations=200)
                for row in picks
            ]
        )
        low, high = np.percentile(draws, [2.5, 97.5], axis=0)
    return sorted(
        (
            Rating(m, float(point[i]), float(low[i]), float(high[i]), int(games[i]))
            for i, m in enumerate(models)
        ),
        key=lambda r: -r.score,
    )


def _win_matrix(n: int, outcomes: Sequence[tuple[int, int]]) -> np.ndarray:
    wins = np.zeros((n, n))
    for winner, loser in outcomes:
        wins[winner, loser] += 1
    return wins
