"""Bias reports with Fairlearn: per-group metrics, disparities, base vs fine-tuned (data only).

Input is a table with one row per answer: outcome columns (thumb_up, stars, score,
latency_ms) that may be missing per row, an optional binary `label`, and any columns
the reviewer picks as sensitive features. Every metric is computed by Fairlearn's
MetricFrame on the rows where that outcome exists, with bootstrap intervals so a
small group's number is read with its uncertainty.
"""

from __future__ import annotations

import threading
from collections.abc import Callable
from dataclasses import dataclass, field

import numpy as np
import pandas as pd

from core.comparison.evaluation import exact_match, token_f1
from core.errors import InvalidInput
from core.serving.answers import answer_with_each
from core.serving.models import ModelService
from core.serving.modelspec import ResolvedModel
from core.store.fairness import SENSITIVE_COLUMNS

# outcome column -> (label, how its value per group is summarised)
METRICS = {
    "thumb_up": "thumbs-up rate",
    "stars": "mean stars",
    "score": "evaluation score (F1)",
    "latency_ms": "latency (ms)",
}
MISSING = "(missing)"
YES = {"1", "yes", "true", "y", "positive"}
NO = {"0", "no", "false", "n", "negative"}

Progress = Callable[[int, int], None]


def _mean(y_true, y_pred) -> float:
    return float(np.mean(y_true))


@dataclass(frozen=True, kw_only=True)
class FairnessSettings:
    n_boot: int = 200  # bootstrap resamples for the intervals; 0 turns them off
    confidence: float = 0.95
    min_group_size: int = 5  # smaller groups are flagged as too small to read
    seed: int = 0

    def __post_init__(self) -> None:
        if not 0 <= self.n_boot <= 5000:
            raise InvalidInput(f"n_boot must be 0-5000, got {self.n_boot}")
        if not 0.5 <= self.confidence < 1:
            raise InvalidInput(f"confidence must be in [0.5, 1), got {self.confidence}")

    @property
    def quantiles(self) -> list[float]:
        tail = (1 - self.confidence) / 2
        return [tail, 1 - tail]


@dataclass(frozen=True, kw_only=True)
class GroupReport:
    """One model's report: a row per group (plus 'overall') and the disparities."""

    features: list[str]
    table: pd.DataFrame  # group, count, <metric>, <metric>_low, <metric>_high, small
    disparities: dict  # demographic parity difference / ratio, equalized odds difference

    def to_dict(self) -> dict:
        return {
            "features": self.features,
            "groups": _records(self.table),
            "disparities": self.disparities,
        }


@dataclass(frozen=True, kw_only=True)
class FairnessComparison:
    base: GroupReport
    tuned: GroupReport | None = None
    change: pd.DataFrame | None = None  # group, <metric>_change, <metric>_significant
    notes: list[str] = field(default_factory=list)

    def to_dict(self) -> dict:
        return {
            "base": self.base.to_dict(),
            "tuned": None if self.tuned is None else self.tuned.to_dict(),
            "change": None if self.change is None else _records(self.change),
            "notes": self.notes,
        }


def _records(frame: pd.DataFrame) -> list[dict]:
    clean = frame.astype(object).where(frame.notna(), None)
    return clean.to_dict(orient="records")


def group_labels(frame: pd.DataFrame, features: list[str]) -> pd.Series:
    """One label per row: the values of the chosen features joined (intersectional groups)."""
    if not features:
        raise InvalidInput("choose at least one sensitive feature")
    unknown = [f for f in features if f not in frame.columns]
    if unknown:
        raise InvalidInput(
            f"unknown sensitive feature(s) {unknown}; available: {sorted(frame.columns)}"
        )
    parts = frame[features].astype(object).where(frame[features].notna(), MISSING).astype(str)
    return parts.agg(" · ".join, axis=1).rename(" · ".join(features))


def group_report(
    frame: pd.DataFrame, features: list[str], settings: FairnessSettings | None = None
) -> GroupReport:
    """Fairlearn MetricFrames per outcome, merged into one table of groups."""
    from fairlearn.metrics import MetricFrame, count

    settings = settings or FairnessSettings()
    if frame is None or frame.empty:
        raise InvalidInput("there are no rows to report on: log and rate some turns first")
    groups = group_labels(frame, features)
    if groups.nunique() < 2:
        raise InvalidInput(
            f"every row has the same value of {' · '.join(features)} ({groups.iloc[0]!r}): "
            "a bias report needs at least two groups to compare"
        )
    sizes = MetricFrame(metrics=count, y_true=groups, y_pred=groups, sensitive_features=groups)
    table = pd.DataFrame({"count": sizes.by_group.astype(int)})
    table.loc["overall", "count"] = int(sizes.overall)
    for column in METRICS:
        if column not in frame.columns:
            continue
        rows = frame[column].notna()
        if not rows.any():
            continue
        values = frame.loc[rows, column].astype(float)
        metric = MetricFrame(
            metrics=_mean,
            y_true=values,
            y_pred=values,
            sensitive_features=groups[rows],
            **_bootstrap(settings),
        )
        table[column] = metric.by_group
        table.loc["overall", column] = metric.overall
        table[f"{column}_n"] = (
            MetricFrame(metrics=count, y_true=values, y_pred=values,
                        sensitive_features=groups[rows]).by_group
        )
        table.loc["overall", f"{column}_n"] = int(rows.sum())
        if settings.n_boot:
            low, high = metric.by_group_ci
            table[f"{column}_low"], table[f"{column}_high"] = low, high
            table.loc["overall", f"{column}_low"] = metric.overall_ci[0]
            table.loc["overall", f"{column}_high"] = metric.overall_ci[1]
    table["small"] = table["count"] < settings.min_group_size
    table.index.name = "group"
    return GroupReport(
        features=list(features),
        table=table.reset_index(),
        disparities=disparities(frame, groups),
    )


def _bootstrap(settings: FairnessSettings) -> dict:
    if not settings.n_boot:
        return {}
    return {
        "n_boot": settings.n_boot,
        "ci_quantiles": settings.quantiles,
        "random_state": settings.seed,
    }


def disparities(frame: pd.DataFrame, groups: pd.Series) -> dict:
    """Demographic parity of the positive outcome; equalized odds where labels exist."""
    from fairlearn.metrics import (
        demographic_parity_difference,
        demographic_parity_ratio,
        equalized_odds_difference,
    )

    out = {"positive_outcome": None, "demographic_parity_difference": None,
           "demographic_parity_ratio": None, "equalized_odds_difference": None}
    if "positive" not in frame.columns:
        return out
    rows = frame["positive"].notna()
    if rows.sum() and groups[rows].nunique() >= 2:
        y_pred = frame.loc[rows, "positive"].astype(int)
        kwargs = {"y_true": y_pred, "y_pred": y_pred, "sensitive_features": groups[rows]}
        out["positive_outcome"] = frame.attrs.get("positive", "positive")
        out["demographic_parity_difference"] = float(demographic_parity_difference(**kwargs))
        out["demographic_parity_ratio"] = float(demographic_parity_ratio(**kwargs))
    if "label" in frame.columns:
        rows = rows & frame["label"].notna()
        if rows.sum() and groups[rows].nunique() >= 2:
            out["equalized_odds_difference"] = float(
                equalized_odds_difference(
                    frame.loc[rows, "label"].astype(int),
                    frame.loc[rows, "positive"].astype(int),
                    sensitive_features=groups[rows],
                )
            )
    return out


def compare(base: GroupReport, tuned: GroupReport) -> pd.DataFrame:
    """Per group and metric: tuned minus base; 'significant' when the intervals do not overlap."""
    left = base.table.set_index("group")
    right = tuned.table.set_index("group")
    shared = [g for g in left.index if g in right.index]
    change = pd.DataFrame(index=pd.Index(shared, name="group"))
    for column in METRICS:
        if column not in left.columns or column not in right.columns:
            continue
        change[f"{column}_base"] = left.loc[shared, column]
        change[f"{column}_tuned"] = right.loc[shared, column]
        change[f"{column}_change"] = right.loc[shared, column] - left.loc[shared, column]
        if f"{column}_low" in left.columns and f"{column}_low" in right.columns:
            apart = (right.loc[shared, f"{column}_low"] > left.loc[shared, f"{column}_high"]) | (
                right.loc[shared, f"{column}_high"] < left.loc[shared, f"{column}_low"]
            )
            change[f"{column}_significant"] = apart
    return change.reset_index()


def turns_frame(turns: pd.DataFrame) -> pd.DataFrame:
    """Logged turns as report rows: thumbs up is the positive outcome."""
    frame = turns.copy()
    frame["positive"] = frame["thumb_up"]
    frame.attrs["positive"] = "thumbs up"
    return frame


def compare_turns(
    turns: pd.DataFrame,
    features: list[str],
    *,
    tuned_model: str | None = None,
    settings: FairnessSettings | None = None,
) -> FairnessComparison:
    """Base-model turns vs the turns of one fine-tuned model (its `model` column value)."""
    frame = turns_frame(turns)
    if tuned_model is None:
        return FairnessComparison(base=group_report(frame, features, settings))
    is_base = frame["adapter_version"].isna()
    tuned_rows = frame["model"] == tuned_model
    if not tuned_rows.any():
        raise InvalidInput(f"no logged turns of model {tuned_model!r}")
    base = group_report(frame[is_base], features, settings)
    tuned = group_report(frame[tuned_rows], features, settings)
    return FairnessComparison(base=base, tuned=tuned, change=compare(base, tuned))


def parse_label(value) -> float:
    text = str(value).strip().lower()
    if text in YES:
        return 1.0
    if text in NO:
        return 0.0
    return np.nan


def eval_rows(rows: pd.DataFrame, *, max_rows: int = 500) -> pd.DataFrame:
    """Validate an uploaded evaluation set: a `prompt` column, optional reference and label."""
    if rows is None or rows.empty:
        raise InvalidInput("the evaluation set has no rows")
    if "prompt" not in rows.columns:
        raise InvalidInput(
            f"the evaluation set needs a 'prompt' column; it has {list(rows.columns)}"
        )
    if len(rows) > max_rows:
        raise InvalidInput(f"the evaluation set has {len(rows)} rows; the limit is {max_rows}")
    frame = rows.reset_index(drop=True).copy()
    frame["prompt"] = frame["prompt"].astype(str)
    if (frame["prompt"].str.strip() == "").any():
        raise InvalidInput("some rows of the evaluation set have an empty prompt")
    if "label" in frame.columns:
        frame["label"] = frame["label"].map(parse_label)
    return frame


def score_answers(frame: pd.DataFrame, answers: list[dict]) -> pd.DataFrame:
    """Attach answers and their scores; the positive outcome is a correct answer (F1 >= 0.5),
    or, for rows with a yes/no label, an answer that starts with 'yes'."""
    scored = frame.copy()
    scored["answer"] = [a["answer"] for a in answers]
    scored["latency_ms"] = [a["latency_ms"] for a in answers]
    if "reference" in scored.columns:
        refs = scored["reference"].where(scored["reference"].notna(), None)
        scored["score"] = [
            None if r is None or not str(r).strip() else token_f1(a, str(r))
            for a, r in zip(scored["answer"], refs, strict=True)
        ]
        scored["exact_match"] = [
            None if r is None or not str(r).strip() else exact_match(a, str(r))
            for a, r in zip(scored["answer"], refs, strict=True)
        ]
        scored["score"] = scored["score"].astype(float)
        scored["positive"] = (scored["score"] >= 0.5).astype(float).where(scored["score"].notna())
        scored.attrs["positive"] = "correct answer (F1 >= 0.5)"
    if "label" in scored.columns:
        said_yes = [parse_label((a.split() or [""])[0].strip(".,!:;")) for a in scored["answer"]]
        scored["positive"] = pd.Series(said_yes, index=scored.index).fillna(0.0)
        scored.attrs["positive"] = "answered yes"
    return scored


@dataclass
class FairnessService:
    models: ModelService
    data: object  # core.store.fairness.FairnessData
    resolve: Callable[[str | None], ResolvedModel]
    features: tuple[str, ...] = SENSITIVE_COLUMNS  # the turn columns a report can group by

    def turns(self) -> pd.DataFrame:
        return self.data.turns()

    def turns_report(
        self,
        features: list[str],
        *,
        tuned_model: str | None = None,
        settings: FairnessSettings | None = None,
    ) -> FairnessComparison:
        return compare_turns(self.turns(), features, tuned_model=tuned_model, settings=settings)

    def eval_report(
        self,
        rows: pd.DataFrame,
        features: list[str],
        *,
        base: str = "base",
        tuned: str | None = None,
        settings: FairnessSettings | None = None,
        max_new_tokens: int = 64,
        progress: Progress | None = None,
        cancel: threading.Event | None = None,
    ) -> tuple[FairnessComparison, pd.DataFrame]:
        """Answer every row with base (and tuned), then report both; returns the scored rows."""
        frame = eval_rows(rows)
        group_labels(frame, features)  # fail on a bad feature before the slow part
        specs = [base] if tuned is None else [base, tuned]
        targets = [self.resolve(spec) for spec in specs]
        each = answer_with_each(
            self.models, targets, frame["prompt"].tolist(),
            max_new_tokens=max_new_tokens, progress=progress, cancel=cancel,
        )
        scored = []
        for target, answers in zip(targets, each, strict=True):
            part = score_answers(frame, answers)
            part.insert(0, "model", target.spec)
            scored.append(part)
        reports = [group_report(part, features, settings) for part in scored]
        if len(reports) == 1:
            return FairnessComparison(base=reports[0]), scored[0]
        comparison = FairnessComparison(
            base=reports[0], tuned=reports[1], change=compare(reports[0], reports[1])
        )
        return comparison, pd.concat(scored, ignore_index=True)
