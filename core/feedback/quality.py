"""Quality checks over rated turns: short answers, duplicates, conflicts, agreement, outliers.

Each check takes the rows of a curation selection (one row per turn and rater, as
`CurationStore.all_rows` returns them) and gives back the rows it flags.
"""

from __future__ import annotations

import re
from dataclasses import dataclass, field

import krippendorff
import numpy as np
import pandas as pd
from scipy.sparse.csgraph import connected_components
from sklearn.feature_extraction.text import TfidfVectorizer
from sklearn.metrics import cohen_kappa_score
from sklearn.neighbors import radius_neighbors_graph

from core.errors import InvalidInput
from core.feedback.turn_filter import TurnFilter
from core.store.curation import CurationStore

MAX_NEAR_DUPLICATE_PROMPTS = 5_000  # the pairwise comparison grows with the square of this
TURN_COLUMNS = ["response_id", "prompt", "response", "model_version", "created_at"]


@dataclass(frozen=True)
class QualityCheck:
    name: str
    summary: str
    rows: pd.DataFrame


@dataclass(frozen=True)
class Agreement:
    """Inter-rater agreement on one field over the items rated by two or more raters."""

    field: str
    raters: list[str]
    items: int
    kappa: float | None = None  # Cohen's kappa, exactly two raters
    alpha: float | None = None  # Krippendorff's alpha, two or more raters
    note: str = ""
    explanation: str = ""  # one line on reading the two scores side by side


@dataclass(frozen=True)
class QualityReport:
    rows_checked: int
    truncated: bool
    checks: list[QualityCheck] = field(default_factory=list)
    agreement: Agreement | None = None


def normalise(text: str) -> str:
    return re.sub(r"\s+", " ", re.sub(r"[^\w\s]", "", str(text).lower())).strip()


def turns(frame: pd.DataFrame) -> pd.DataFrame:
    return frame.drop_duplicates("response_id")[TURN_COLUMNS].reset_index(drop=True)


def short_answers(frame: pd.DataFrame, *, min_words: int = 3) -> QualityCheck:
    """Answers that are empty or have fewer than `min_words` words."""
    unique = turns(frame)
    words = unique["response"].fillna("").str.split().str.len()
    flagged = unique[words < min_words].assign(words=words[words < min_words])
    return QualityCheck(
        "short answers",
        f"{len(flagged)} of {len(unique)} answers are empty or under {min_words} words",
        flagged,
    )


def duplicate_prompts(frame: pd.DataFrame, *, threshold: float = 0.7) -> QualityCheck:
    """Prompts equal after normalising case/punctuation/space (all of them), or near-equal by
    TF-IDF cosine of character n-grams (among the newest distinct prompts, up to a cap)."""
    unique = turns(frame)
    unique["normalised"] = unique["prompt"].map(normalise)
    distinct = unique.sort_values("created_at")["normalised"].drop_duplicates()
    capped = len(distinct) > MAX_NEAR_DUPLICATE_PROMPTS
    group_of = {text: i for i, text in enumerate(distinct)}
    near = distinct.tail(MAX_NEAR_DUPLICATE_PROMPTS)
    if len(near) > 1:
        vectors = TfidfVectorizer(analyzer="char_wb", ngram_range=(3, 5)).fit_transform(near)
        graph = radius_neighbors_graph(vectors, radius=1 - threshold, metric="cosine")
        _, labels = connected_components(graph, directed=False)
        offset = len(group_of)
        group_of.update({t: offset + int(g) for t, g in zip(near, labels, strict=True)})
    unique["group"] = unique["normalised"].map(group_of)
    sizes = unique.groupby("group")["response_id"].transform("size")
    flagged = unique[sizes > 1].copy()
    exact = flagged.groupby("normalised")["response_id"].transform("size") > 1
    flagged["match"] = np.where(exact, "exact", "near")
    flagged["group"] = flagged["group"].rank(method="dense").astype(int)
    flagged = flagged.sort_values(["group", "created_at"]).drop(columns="normalised")
    scope = f"the newest {MAX_NEAR_DUPLICATE_PROMPTS:,} distinct prompts" if capped else "all"
    return QualityCheck(
        "duplicate prompts",
        f"{len(flagged)} turns share a prompt with another turn ({int(exact.sum())} exact, "
        f"{int((~exact).sum())} near: cosine >= {threshold} among {scope})",
        flagged,
    )


def conflicting_ratings(frame: pd.DataFrame, *, min_gap: int = 3) -> QualityCheck:
    """The same answer rated far apart (stars) or thumbed both up and down by different raters."""
    by_turn = frame.groupby("response_id")
    gap = (by_turn["rating"].transform("max") - by_turn["rating"].transform("min")).fillna(0)
    thumbs = by_turn["thumb"].transform("nunique")  # nunique skips missing thumbs
    raters = by_turn["rater"].transform("nunique")
    mask = (raters > 1) & ((gap >= min_gap) | (thumbs > 1))
    columns = ["response_id", "rater", "rating", "thumb", "correction", "prompt", "response"]
    flagged = frame.loc[mask, columns].sort_values(["response_id", "rater"])
    return QualityCheck(
        "conflicting ratings",
        f"{flagged['response_id'].nunique()} answers have ratings {min_gap}+ stars apart "
        "or opposite thumbs",
        flagged,
    )


AGREEMENT_EXPLANATION = {
    "rating": "1 = perfect agreement, 0 = chance. Kappa counts 4 vs 5 stars as a full "
    "disagreement and alpha (ordinal) as a near miss, and when nearly every rating is the same "
    "chance agreement is already high, so kappa can sit near 0 beside a high alpha "
    "(kappa's prevalence paradox).",
    "thumb": "1 = perfect agreement, 0 = chance. When nearly every thumb is the same, chance "
    "agreement is already high and kappa can sit near 0 even though the raters mostly agree "
    "(kappa's prevalence paradox); alpha pools both raters' thumbs and is hit less.",
}


def rating_matrix(frame: pd.DataFrame, field: str) -> pd.DataFrame:
    """Items x raters; thumbs become 1 (up) / 0 (down); NaN where a rater gave no value."""
    values = frame[["response_id", "rater", field]].dropna()
    if field == "thumb":
        values = values.assign(thumb=values["thumb"].map({"up": 1.0, "down": 0.0}))
    matrix = values.pivot_table(index="response_id", columns="rater", values=field, aggfunc="last")
    return matrix[matrix.notna().sum(axis=1) >= 2]


def agreement(frame: pd.DataFrame, *, field: str = "rating", weights: str | None = None):
    """Cohen's kappa (two raters) and Krippendorff's alpha (ordinal for stars, nominal thumbs)."""
    if field not in ("rating", "thumb"):
        raise InvalidInput(f"agreement is measured on 'rating' or 'thumb', not {field!r}")
    matrix = rating_matrix(frame, field)
    raters = [str(r) for r in matrix.columns[matrix.notna().any()]]
    matrix = matrix[raters]
    if len(matrix) < 2 or len(raters) < 2:
        return Agreement(field, raters, len(matrix), note="needs 2+ items rated by 2+ raters")
    level = "ordinal" if field == "rating" else "nominal"
    data = matrix.to_numpy(dtype=float).T
    alpha = None
    if len(np.unique(data[~np.isnan(data)])) > 1:
        alpha = float(krippendorff.alpha(reliability_data=data, level_of_measurement=level))
    kappa, note = None, f"Krippendorff's alpha ({level})"
    if len(raters) == 2:
        both = matrix.dropna()
        kappa = float(cohen_kappa_score(both.iloc[:, 0], both.iloc[:, 1], weights=weights))
        kappa = None if np.isnan(kappa) else kappa
        note = f"Cohen's kappa on {len(both)} items rated by both; " + note
    return Agreement(
        field, raters, len(matrix), kappa=kappa, alpha=alpha, note=note,
        explanation=AGREEMENT_EXPLANATION[field],
    )


def rater_outliers(
    frame: pd.DataFrame, *, threshold: float = 1.5, min_items: int = 3
) -> QualityCheck:
    """Raters whose stars sit far from the mean of the other raters on the same answers."""
    matrix = rating_matrix(frame, "rating")
    records = []
    for rater in matrix.columns:
        others = matrix.drop(columns=rater).mean(axis=1)
        shared = matrix[rater].notna() & others.notna()
        if shared.sum() == 0:
            continue
        deviation = (matrix.loc[shared, rater] - others[shared]).abs().mean()
        records.append(
            {"rater": rater, "shared_items": int(shared.sum()), "mean_abs_deviation": deviation}
        )
    table = pd.DataFrame(records, columns=["rater", "shared_items", "mean_abs_deviation"])
    table["flagged"] = (table["shared_items"] >= min_items) & (
        table["mean_abs_deviation"] >= threshold
    )
    flagged = table.sort_values("mean_abs_deviation", ascending=False)
    return QualityCheck(
        "rater outliers",
        f"{int(table['flagged'].sum())} of {len(table)} raters differ from the others by "
        f"{threshold}+ stars on average (over {min_items}+ shared answers)",
        flagged.round({"mean_abs_deviation": 3}).reset_index(drop=True),
    )


class QualityService:
    def __init__(self, curation: CurationStore, *, max_rows: int = 100_000) -> None:
        self.curation = curation
        self.max_rows = max_rows

    def report(self, flt: TurnFilter, *, field: str = "rating") -> QualityReport:
        frame = self.curation.all_rows(flt)
        truncated = len(frame) > self.max_rows
        frame = frame.tail(self.max_rows)
        if frame.empty:
            return QualityReport(0, False, agreement=agreement(frame, field=field))
        return QualityReport(
            rows_checked=len(frame),
            truncated=truncated,
            checks=[
                short_answers(frame),
                duplicate_prompts(frame),
                conflicting_ratings(frame),
                rater_outliers(frame),
            ],
            agreement=agreement(frame, field=field),
        )
