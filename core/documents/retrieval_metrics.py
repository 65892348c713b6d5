"""Retrieval quality on held-out queries: precision@k, recall@k, MRR@k and NDCG@k.

Definitions follow sentence-transformers' InformationRetrievalEvaluator (binary relevance):
precision@k = relevant hits in the top k / k; recall@k = relevant hits in the top k / number
of relevant documents; MRR@k = 1 / rank of the first relevant hit within the top k (0 when
none); NDCG@k = DCG of the top k / DCG of an ideal ranking, with gain 1 / log2(rank + 1).
Each figure is the mean over queries.
"""

from __future__ import annotations

import math
from collections.abc import Callable, Hashable, Sequence
from dataclasses import dataclass

import numpy as np

from core.errors import InvalidInput

KS = (1, 3, 5, 10)
METRICS = ("precision", "recall", "mrr", "ndcg")

Encode = Callable[[list[str]], np.ndarray]  # texts -> one row per text


def _dcg(gains: Sequence[int]) -> float:
    return sum(gain / math.log2(rank + 2) for rank, gain in enumerate(gains))


def ranking_metrics(
    rankings: Sequence[Sequence[Hashable]],
    relevant: Sequence[set],
    *,
    ks: Sequence[int] = KS,
) -> dict[str, float]:
    """Mean metrics over queries; `rankings[i]` is query i's documents, best first."""
    if len(rankings) != len(relevant):
        raise InvalidInput("rankings and relevant sets must have one entry per query")
    if not rankings:
        raise InvalidInput("no query to evaluate")
    if any(not docs for docs in relevant):
        raise InvalidInput("every query needs at least one relevant document")
    if not ks or any(k < 1 for k in ks):
        raise InvalidInput("each k must be at least 1")
    totals = {f"{metric}@{k}": 0.0 for metric in METRICS for k in ks}
    for ranked, wanted in zip(rankings, relevant, strict=True):
        for k in ks:
            hits = [1 if doc in wanted else 0 for doc in ranked[:k]]
            totals[f"precision@{k}"] += sum(hits) / k
            totals[f"recall@{k}"] += sum(hits) / len(wanted)
            first = next((rank for rank, hit in enumerate(hits) if hit), None)
            totals[f"mrr@{k}"] += 0.0 if first is None else 1.0 / (first + 1)
            totals[f"ndcg@{k}"] += _dcg(hits) / _dcg([1] * min(len(wanted), k))
    return {name: value / len(rankings) for name, value in totals.items()}


@dataclass(frozen=True)
class EvaluationSet:
    """Held-out queries against a corpus of every positive and negative text of their rows."""

    queries: tuple[str, ...]
    corpus: tuple[str, ...]
    relevant: tuple[frozenset[int], ...]  # corpus positions of each query's positives

    @classmethod
    def from_rows(cls, rows: Sequence[dict]) -> EvaluationSet:
        corpus: dict[str, int] = {}
        wanted: dict[str, set[int]] = {}
        for row in rows:
            for text in (row["positive"], *row.get("negatives", ())):
                corpus.setdefault(text, len(corpus))
            wanted.setdefault(row["query"], set()).add(corpus[row["positive"]])
        if not wanted:
            raise InvalidInput("no held-out query to evaluate the retriever on")
        return cls(tuple(wanted), tuple(corpus), tuple(frozenset(v) for v in wanted.values()))


def evaluate_encoder(
    encode: Encode, rows: Sequence[dict], *, ks: Sequence[int] = KS
) -> dict[str, float]:
    """Rank the corpus for every held-out query by cosine similarity and score the rankings."""
    data = EvaluationSet.from_rows(rows)
    queries = _unit(encode(list(data.queries)))
    corpus = _unit(encode(list(data.corpus)))
    order = np.argsort(-(queries @ corpus.T), axis=1, kind="stable")
    metrics = ranking_metrics([list(r) for r in order], list(data.relevant), ks=ks)
    return {**metrics, "queries": len(data.queries), "corpus": len(data.corpus)}


def _unit(vectors: np.ndarray) -> np.ndarray:
    vectors = np.asarray(vectors, dtype=np.float32)
    return vectors / np.maximum(np.linalg.norm(vectors, axis=1, keepdims=True), 1e-12)


def comparison_table(before: dict | None, after: dict | None) -> list[dict]:
    """One row per metric: before, after and the change (None where a side is missing)."""
    names = [n for n in (after or before or {}) if "@" in n]
    rows = []
    for name in names:
        old = (before or {}).get(name)
        new = (after or {}).get(name)
        change = None if old is None or new is None else round(new - old, 4)
        rows.append({
            "metric": name,
            "before": None if old is None else round(old, 4),
            "after": None if new is None else round(new, 4),
            "change": change,
        })
    return rows
