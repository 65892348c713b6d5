"""Drift of the serving model's ratings and of the prompt distribution, with the evidence.

Ratings: the latest `window` ratings of the served model are tested against the `baseline`
ratings before them (two-proportion z-test on thumbs, Mann-Whitney U on stars) and a
Bernoulli CUSUM follows the thumbs of the recent window. Only a decline raises an alert:
better ratings are not a problem to act on. A newly promoted adapter starts a stream (and a
baseline) of its own. Prompts (of every model): the latest `prompt_window` prompts against the
`prompt_baseline` before them, by the cosine distance of the embedding centroids and a
population stability index over k-means topics of the baseline; each needs both a significant
p-value and a distance past its threshold, since small windows of one distribution differ too.
"""

from __future__ import annotations

import math
import threading
from collections.abc import Callable
from dataclasses import asdict, dataclass, fields, replace

import numpy as np

from core.comparison.stats import mann_whitney_test, two_proportion_z_test
from core.errors import InvalidInput
from core.store.drift import DriftData

Embed = Callable[[list[str]], np.ndarray]  # texts -> unit-length rows
PSI_FLOOR = 1e-4  # keeps an empty topic's share finite in the log ratio
NEW_TOPIC_QUANTILE = 0.95  # baseline prompts within this distance of a centre are "known"


@dataclass(frozen=True)
class DriftAlert:
    kind: str  # thumbs | stars | cusum | prompt_centroid | prompt_psi
    message: str
    evidence: dict


@dataclass(frozen=True)
class DriftReport:
    alerts: list[DriftAlert]
    ratings: dict
    prompts: dict

    def to_dict(self) -> dict:
        return asdict(self)


@dataclass(frozen=True, kw_only=True)
class DriftOptions:
    baseline: int = 200  # ratings before the recent window
    window: int = 50  # the recent ratings under test
    min_samples: int = 20  # fewer in either window: no test, no alert
    alpha: float = 0.01
    rolling: int = 20  # the charts' rolling window
    cusum_shift: float = 0.2  # the drop in thumbs-up rate the CUSUM is tuned to
    cusum_threshold: float = 6.0  # log-likelihood ratio: under 2% false alarms per 50 ratings
    prompt_baseline: int = 300
    prompt_window: int = 100
    centroid_threshold: float = 0.1  # cosine distance of the two embedding centroids
    psi_threshold: float = 0.25  # the usual "significant shift" level of the PSI
    topics: int = 8  # at most; fewer when the windows are small
    permutations: int = 500  # for the p-value of the centroid distance
    seed: int = 0

    def __post_init__(self) -> None:
        for name in ("baseline", "window", "min_samples", "rolling", "prompt_baseline",
                     "prompt_window"):
            if getattr(self, name) < 2:
                raise InvalidInput(f"{name} must be at least 2, got {getattr(self, name)}")
        if not 0 < self.alpha < 1:
            raise InvalidInput(f"alpha must be between 0 and 1, got {self.alpha}")
        if not 0 < self.cusum_shift < 1:
            raise InvalidInput(f"cusum_shift must be between 0 and 1, got {self.cusum_shift}")
        if self.cusum_threshold <= 0:
            raise InvalidInput("cusum_threshold must be positive")
        if not 0 < self.centroid_threshold <= 2:
            raise InvalidInput("centroid_threshold must be in (0, 2] (a cosine distance)")
        if self.psi_threshold <= 0:
            raise InvalidInput("psi_threshold must be positive")
        if not 100 <= self.permutations <= 10_000:
            raise InvalidInput(f"permutations must be 100-10000, got {self.permutations}")
        if not 2 <= self.topics <= 50:
            raise InvalidInput(f"topics must be 2-50, got {self.topics}")


OPTION_NAMES = frozenset(f.name for f in fields(DriftOptions))


class DriftMonitor:
    def __init__(
        self, data: DriftData, *, embed: Embed, registry=None, options: DriftOptions | None = None
    ) -> None:
        self.data = data
        self.embed = embed
        self.registry = registry  # core.serving.registry.ModelRegistry: which adapter is served
        self.options = options or DriftOptions()
        self._vectors: dict[str, np.ndarray] = {}  # interaction id -> prompt embedding
        self._lock = threading.Lock()  # the dashboard and the Monitor tab may check at once

    def check(self, **overrides) -> DriftReport:
        """Test both streams now; keyword overrides change any DriftOptions field."""
        unknown = set(overrides) - OPTION_NAMES
        if unknown:
            raise InvalidInput(f"unknown drift options: {', '.join(sorted(unknown))}")
        options = replace(self.options, **overrides)
        served = self.registry.active() if self.registry is not None else None
        version = served.id if served is not None else None
        rows = self.data.ratings(version, limit=options.baseline + options.window)
        ratings, rating_alerts = rating_drift(rows, options)
        ratings["model"] = version or "base"
        prompts, prompt_alerts = self._prompt_drift(options)
        return DriftReport([*rating_alerts, *prompt_alerts], ratings, prompts)

    def _prompt_drift(self, options: DriftOptions) -> tuple[dict, list[DriftAlert]]:
        rows = self.data.prompts(limit=options.prompt_baseline + options.prompt_window)
        split = len(rows) - options.prompt_window
        summary = {"baseline_n": max(split, 0), "recent_n": min(len(rows), options.prompt_window)}
        if split < options.min_samples:
            return {**summary, "tested": False}, []
        vectors = self._embed_rows(rows)
        return prompt_drift(vectors[:split], vectors[split:], [r["prompt"] for r in rows],
                            options)

    def _embed_rows(self, rows: list[dict]) -> np.ndarray:
        with self._lock:
            vectors = {r["id"]: self._vectors[r["id"]] for r in rows if r["id"] in self._vectors}
            missing = [r for r in rows if r["id"] not in vectors]
            if missing:
                new = self.embed([r["prompt"] for r in missing])
                vectors.update(zip([r["id"] for r in missing], new, strict=True))
            self._vectors = vectors  # only the current windows: the cache stays bounded
            return np.stack([vectors[r["id"]] for r in rows])


def rating_drift(rows: list[dict], options: DriftOptions) -> tuple[dict, list[DriftAlert]]:
    thumbs = [1.0 if r["thumb"] == "up" else 0.0 for r in rows if r["thumb"] is not None]
    stars = [float(r["stars"]) for r in rows if r["stars"] is not None]
    thumbs_summary, alerts = _thumbs(thumbs, options)
    stars_summary, star_alerts = _stars(stars, options)
    return {"thumbs": thumbs_summary, "stars": stars_summary}, [*alerts, *star_alerts]


def _windows(values: list[float], options: DriftOptions) -> tuple[list[float], list[float]]:
    split = max(len(values) - options.window, 0)
    return values[:split], values[split:]


def _base_summary(values: list[float], options: DriftOptions) -> dict:
    base, recent = _windows(values, options)
    return {
        "baseline_n": len(base),
        "recent_n": len(recent),
        "baseline_mean": _mean(base),
        "recent_mean": _mean(recent),
        "rolling": _rolling(values, options.rolling),
        "recent_start": len(base),  # index of the first recent value in the series
        "tested": len(base) >= options.min_samples and len(recent) >= options.min_samples,
    }


def _thumbs(values: list[float], options: DriftOptions) -> tuple[dict, list[DriftAlert]]:
    summary = _base_summary(values, options)
    if not summary["tested"]:
        return summary, []
    base, recent = _windows(values, options)
    p0, p1 = summary["baseline_mean"], summary["recent_mean"]
    test = two_proportion_z_test(int(sum(base)), len(base), int(sum(recent)), len(recent))
    spread = math.sqrt(p0 * (1 - p0) / options.rolling)
    cusum = bernoulli_cusum(recent, p0, shift=options.cusum_shift)
    summary.update(
        band=[max(0.0, p0 - 1.96 * spread), min(1.0, p0 + 1.96 * spread)],
        z=test.statistic, p_value=test.p_value, cusum=cusum,
        cusum_max=max(cusum, default=0.0),
    )
    evidence = {k: summary[k] for k in ("baseline_n", "recent_n", "baseline_mean",
                                        "recent_mean", "z", "p_value")}
    alerts = []
    if test.p_value is not None and test.p_value < options.alpha and p1 < p0:
        alerts.append(DriftAlert(
            "thumbs",
            f"thumbs-up rate fell from {p0:.0%} ({len(base)} ratings before) to {p1:.0%} "
            f"(the last {len(recent)}), two-proportion z-test p = {test.p_value:.2g}",
            evidence,
        ))
    alarm = next((i for i, s in enumerate(cusum) if s > options.cusum_threshold), None)
    if alarm is not None:
        alerts.append(DriftAlert(
            "cusum",
            f"CUSUM of thumbs crossed {options.cusum_threshold:g} at recent rating {alarm + 1} "
            f"of {len(recent)} (tuned to a {options.cusum_shift:.0%} drop from {p0:.0%})",
            {**evidence, "cusum_max": summary["cusum_max"], "alarm_at": alarm,
             "threshold": options.cusum_threshold, "shift": options.cusum_shift},
        ))
    return summary, alerts


def _stars(values: list[float], options: DriftOptions) -> tuple[dict, list[DriftAlert]]:
    summary = _base_summary(values, options)
    if not summary["tested"]:
        return summary, []
    base, recent = _windows(values, options)
    test = mann_whitney_test(base, recent)
    spread = float(np.std(base, ddof=1)) / math.sqrt(options.rolling)
    m0, m1 = summary["baseline_mean"], summary["recent_mean"]
    summary.update(band=[m0 - 1.96 * spread, m0 + 1.96 * spread], u=test.statistic,
                   p_value=test.p_value)
    if test.p_value is None or test.p_value >= options.alpha or m1 >= m0:
        return summary, []
    evidence = {k: summary[k] for k in ("baseline_n", "recent_n", "baseline_mean",
                                        "recent_mean", "u", "p_value")}
    return summary, [DriftAlert(
        "stars",
        f"mean stars fell from {m0:.2f} to {m1:.2f} (Mann-Whitney p = {test.p_value:.2g})",
        evidence,
    )]


def bernoulli_cusum(values: list[float], p0: float, *, shift: float) -> list[float]:
    """Lower CUSUM of log-likelihood ratios for a fall of the success rate from p0 by `shift`.

    Rates are kept inside (0.01, 0.99) so a baseline of all thumbs up still gives finite
    steps."""
    p0 = min(max(p0, 0.02), 0.99)
    p1 = max(p0 - shift, 0.01)
    up, down = math.log(p1 / p0), math.log((1 - p1) / (1 - p0))
    path, total = [], 0.0
    for value in values:
        total = max(0.0, total + (up if value else down))
        path.append(total)
    return path


def prompt_drift(
    base: np.ndarray, recent: np.ndarray, texts: list[str], options: DriftOptions
) -> tuple[dict, list[DriftAlert]]:
    distance, distance_p = centroid_test(base, recent, options)
    psi, psi_p, topics = topic_shift(base, recent, texts[: len(base)], options)
    summary = {"baseline_n": len(base), "recent_n": len(recent), "tested": True,
               "centroid_distance": distance,
               "centroid_p_value": distance_p, "psi": psi, "psi_p_value": psi_p,
               "topics": topics, "centroid_threshold": options.centroid_threshold,
               "psi_threshold": options.psi_threshold}
    evidence = {k: summary[k] for k in ("baseline_n", "recent_n", "centroid_distance",
                                        "centroid_p_value", "psi", "psi_p_value")}
    alerts = []
    if distance > options.centroid_threshold and distance_p < options.alpha:
        alerts.append(DriftAlert(
            "prompt_centroid",
            f"recent prompts moved away from the baseline: centroid cosine distance "
            f"{distance:.3f} > {options.centroid_threshold:g} (permutation p = {distance_p:.2g})",
            evidence,
        ))
    if psi > options.psi_threshold and psi_p < options.alpha:
        grown = max(topics, key=lambda t: t["recent"] - t["baseline"])
        alerts.append(DriftAlert(
            "prompt_psi",
            f"topic mix shifted: PSI {psi:.2f} > {options.psi_threshold:g} (chi-square p = "
            f"{psi_p:.2g}); {grown['example']!r} went from {grown['baseline']:.0%} to "
            f"{grown['recent']:.0%} of prompts",
            {**evidence, "topics": topics},
        ))
    return summary, alerts


def centroid_distance(a: np.ndarray, b: np.ndarray) -> float:
    """1 - cosine similarity of the mean vectors of two sets of embeddings."""
    left, right = a.mean(axis=0), b.mean(axis=0)
    cosine = float(left @ right / (np.linalg.norm(left) * np.linalg.norm(right)))
    return 1.0 - cosine


def centroid_test(base: np.ndarray, recent: np.ndarray, options: DriftOptions) -> tuple:
    """The centroid distance and its permutation p-value: small windows of the same
    distribution already differ a little, and the p-value says how much is chance."""
    observed = centroid_distance(base, recent)
    both, n = np.vstack([base, recent]), len(base)
    rng = np.random.default_rng(options.seed)
    hits = 0
    for _ in range(options.permutations):
        order = rng.permutation(len(both))
        hits += centroid_distance(both[order[:n]], both[order[n:]]) >= observed
    return observed, (hits + 1) / (options.permutations + 1)


def topic_shift(
    base: np.ndarray, recent: np.ndarray, base_texts: list[str], options: DriftOptions
) -> tuple[float, float, list[dict]]:
    """PSI over k-means topics of the baseline plus a "new topic" bin, and the chi-square
    p-value of the two windows' topic counts.

    A prompt farther from every centre than 95% of the baseline is "new": without that bin a
    topic never seen before would be spread over the nearest old ones. The topics are fit on
    one half of the baseline and counted on the other, so both counted windows are unseen by
    k-means (counted on its own training prompts, the baseline would look tighter than any
    later window). k keeps about twenty prompts per topic per window."""
    from scipy.stats import chi2_contingency
    from sklearn.cluster import KMeans

    order = np.random.default_rng(options.seed).permutation(len(base))
    fit, held = order[: len(base) // 2], order[len(base) // 2 :]
    k = max(2, min(options.topics, len(held) // 20, len(recent) // 20))
    model = KMeans(n_clusters=k, n_init=4, random_state=options.seed).fit(base[fit])
    held_distances = model.transform(base[held])
    radius = float(np.quantile(held_distances.min(axis=1), NEW_TOPIC_QUANTILE))
    counts = np.array([_topic_counts(held_distances, radius, k),
                       _topic_counts(model.transform(recent), radius, k)])
    shares = counts / counts.sum(axis=1, keepdims=True)
    b, r = np.maximum(shares[0], PSI_FLOOR), np.maximum(shares[1], PSI_FLOOR)
    psi = float(np.sum((r - b) * np.log(r / b)))
    used = counts.sum(axis=0) > 0  # a topic empty in both windows carries no evidence
    p_value = float(chi2_contingency(counts[:, used]).pvalue) if used.sum() > 1 else 1.0
    nearest = fit[model.transform(base[fit]).argmin(axis=0)]  # the prompt closest to each centre
    examples = [base_texts[int(nearest[i])][:80] for i in range(k)] + ["(new topic)"]
    topics = [
        {"topic": i, "example": examples[i], "baseline": float(shares[0, i]),
         "recent": float(shares[1, i])}
        for i in range(k + 1)
    ]
    return psi, p_value, topics


def _topic_counts(distances: np.ndarray, radius: float, k: int) -> np.ndarray:
    labels = np.where(distances.min(axis=1) > radius, k, distances.argmin(axis=1))
    return np.bincount(labels, minlength=k + 1)


def _mean(values: list[float]) -> float | None:
    return float(np.mean(values)) if values else None


def _rolling(values: list[float], size: int) -> list[float]:
    """Trailing means over `size` values (over fewer at the start of the series)."""
    sums = np.cumsum([0.0, *values])
    return [
        float((sums[i + 1] - sums[max(0, i + 1 - size)]) / (i + 1 - max(0, i + 1 - size)))
        for i in range(len(values))
    ]
