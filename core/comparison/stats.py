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


def wilson_interval(
    successes: int, trials: int, *, z: float = Z95, continuity: bool = False
) -> Interval:
    """Wilson score interval for a proportion; (0, 1) when there are no trials.

    With `continuity` the continuity-corrected form (Newcombe 1998, method 4): wider, and it
    keeps its 95% coverage at the handful of votes a new comparison starts with.
    """
    if not 0 <= successes <= trials:
        raise InvalidInput(f"need 0 <= successes <= trials, got {successes} of {trials}")
    if trials == 0:
        return Interval(0.0, 1.0)
    n, p = trials, successes / trials
    if continuity:
        scale = 2 * (n + z**2)
        low = high = None
        if successes == 0:
            low = 0.0
        if successes == n:
            high = 1.0
        if low is None:
            root = math.sqrt(z**2 - 2 - 1 / n + 4 * p * (n * (1 - p) + 1))
            low = (2 * n * p + z**2 - 1 - z * root) / scale
        if high is None:
            root = math.sqrt(z**2 + 2 - 1 / n + 4 * p * (n * (1 - p) - 1))
            high = (2 * n * p + z**2 + 1 + z * root) / scale
        return Interval(max(0.0, low), min(1.0, high))
    denominator = 1 + z**2 / n
    centre = (p + z**2 / (2 * n)) / denominator
    half = z * math.sqrt(p * (1 - p) / n + z**2 / (4 * n**2)) / denominator
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
    prior: float = 0.5,
) -> list[Rating]:
    """Ratings with 95% intervals; outcomes are (winner index, loser index).

    Every pair of models starts with `prior` virtual wins each way (one tied game at 0.5), so a
    single vote moves a rating only part of the way and an unbeaten model stays finite. The
    interval is the Laplace approximation: the normal with the inverse curvature of the
    log-likelihood at the fit, so it is wide while the games are few and narrows as
    1/sqrt(games). (A bootstrap of the outcomes has zero width after one vote: every resample
    is that same vote.)
    """
    n = len(models)
    if n < 2:
        raise InvalidInput("Bradley-Terry ratings need at least two models")
    if prior <= 0:
        raise InvalidInput(f"the prior must be positive, got {prior}")
    wins = _win_matrix(n, outcomes)
    games = (wins + wins.T).sum(axis=1).astype(int)
    point = bradley_terry(models, wins, prior=prior)
    half = Z95 * np.sqrt(np.clip(np.diag(_rating_covariance(point, wins, prior)), 0, None))
    return sorted(
        (
            Rating(m, float(point[i]), float(point[i] - half[i]), float(point[i] + half[i]),
                   int(games[i]))
            for i, m in enumerate(models)
        ),
        key=lambda r: -r.score,
    )


def _rating_covariance(scores: np.ndarray, wins: np.ndarray, prior: float) -> np.ndarray:
    """Covariance of the centred log-strengths: the pseudo-inverse of the Fisher information
    (a weighted graph Laplacian, singular only along the shift every rating shares)."""
    n = len(scores)
    games = wins + wins.T + 2 * prior * (1 - np.eye(n))
    p = 1 / (1 + np.exp(scores[None, :] - scores[:, None]))  # p[i, j]: i beats j
    weight = games * p * (1 - p)
    information = np.diag(weight.sum(axis=1)) - weight
    return np.linalg.pinv(information)


def _win_matrix(n: int, outcomes: Sequence[tuple[int, int]]) -> np.ndarray:
    wins = np.zeros((n, n))
    for winner, loser in outcomes:
        wins[winner, loser] += 1
    return wins
