"""Retrieval metrics against values worked out by hand on a tiny ranking."""

from __future__ import annotations

import math
import random

import numpy as np
import pytest

from core.documents.retrieval_metrics import (
    EvaluationSet,
    comparison_table,
    evaluate_encoder,
    ranking_metrics,
)
from core.errors import InvalidInput

# Query A ranks d1..d5 and wants d2 and d4; query B ranks d3 first and wants only d3.
RANKINGS = [["d1", "d2", "d3", "d4", "d5"], ["d3", "d1", "d2", "d4", "d5"]]
RELEVANT = [{"d2", "d4"}, {"d3"}]


def test_metrics_match_hand_computed_values():
    got = ranking_metrics(RANKINGS, RELEVANT, ks=(1, 3, 5))
    # A: no hit at 1; d2 at rank 2 (first hit); d4 at rank 4. B: hit at rank 1.
    ndcg_a_3 = (1 / math.log2(3)) / (1 + 1 / math.log2(3))
    ndcg_a_5 = (1 / math.log2(3) + 1 / math.log2(5)) / (1 + 1 / math.log2(3))
    expected = {
        "precision@1": (0 + 1) / 2, "precision@3": (1 / 3 + 1 / 3) / 2,
        "precision@5": (2 / 5 + 1 / 5) / 2,
        "recall@1": (0 + 1) / 2, "recall@3": (1 / 2 + 1) / 2, "recall@5": (1 + 1) / 2,
        "mrr@1": (0 + 1) / 2, "mrr@3": (1 / 2 + 1) / 2, "mrr@5": (1 / 2 + 1) / 2,
        "ndcg@1": (0 + 1) / 2, "ndcg@3": (ndcg_a_3 + 1) / 2, "ndcg@5": (ndcg_a_5 + 1) / 2,
    }
    assert got.keys() == expected.keys()
    for name, value in expected.items():
        assert got[name] == pytest.approx(value), name
    assert got["ndcg@3"] == pytest.approx(0.693426, abs=1e-6)


def test_a_perfect_ranking_scores_one_and_a_miss_scores_zero():
    perfect = ranking_metrics([["a", "b"]], [{"a"}], ks=(1, 2))
    assert perfect["mrr@1"] == perfect["ndcg@2"] == perfect["recall@1"] == 1.0
    assert perfect["precision@2"] == 0.5  # one relevant document among two places
    missed = ranking_metrics([["b", "c"]], [{"a"}], ks=(2,))
    assert set(missed.values()) == {0.0}


def test_agrees_with_sentence_transformers_evaluator():
    from sentence_transformers.sentence_transformer.evaluation import (
        InformationRetrievalEvaluator,
    )

    rng = random.Random(7)
    corpus = {f"c{i}": f"text {i}" for i in range(12)}
    queries = {f"q{i}": f"query {i}" for i in range(6)}
    relevant = {q: set(rng.sample(sorted(corpus), rng.randint(1, 3))) for q in queries}
    scores = {q: {c: rng.random() for c in corpus} for q in queries}
    evaluator = InformationRetrievalEvaluator(
        queries, corpus, relevant, mrr_at_k=[1, 3, 5], ndcg_at_k=[1, 3, 5],
        precision_recall_at_k=[1, 3, 5], accuracy_at_k=[1], map_at_k=[5])
    reference = evaluator.compute_metrics(
        [[{"corpus_id": c, "score": s} for c, s in scores[q].items()] for q in queries])
    rankings = [sorted(scores[q], key=lambda c: -scores[q][c]) for q in queries]
    ours = ranking_metrics(rankings, [relevant[q] for q in queries], ks=(1, 3, 5))
    for metric in ("precision", "recall", "mrr", "ndcg"):
        for k in (1, 3, 5):
            assert ours[f"{metric}@{k}"] == pytest.approx(reference[f"{metric}@k"][k])


def test_bad_input_is_refused_clearly():
    with pytest.raises(InvalidInput, match="one entry per query"):
        ranking_metrics([["a"]], [{"a"}, {"b"}])
    with pytest.raises(InvalidInput, match="at least one relevant"):
        ranking_metrics([["a"]], [set()])
    with pytest.raises(InvalidInput, match="no query"):
        ranking_metrics([], [])
    with pytest.raises(InvalidInput, match="k must be at least 1"):
        ranking_metrics([["a"]], [{"a"}], ks=(0,))
    with pytest.raises(InvalidInput, match="no held-out query"):
        EvaluationSet.from_rows([])


def test_evaluation_set_pools_positives_and_negatives_and_merges_repeated_queries():
    rows = [
        {"query": "q1", "positive": "p1", "negatives": ["p2", "n1"]},
        {"query": "q2", "positive": "p2", "negatives": ["p1"]},
        {"query": "q1", "positive": "p3", "negatives": []},
    ]
    data = EvaluationSet.from_rows(rows)
    assert data.queries == ("q1", "q2")
    assert data.corpus == ("p1", "p2", "n1", "p3")
    assert data.relevant == (frozenset({0, 3}), frozenset({1}))


def test_evaluate_encoder_ranks_by_cosine():
    # A toy encoder: each text's vector counts the letters a, b and c.
    def encode(texts):
        return np.array([[t.count(ch) for ch in "abc"] + [0.01] for t in texts], dtype=float)

    rows = [{"query": "aaa", "positive": "aa", "negatives": ["bb", "cc"]},
            {"query": "bbbc", "positive": "cc", "negatives": ["bb"]}]
    got = evaluate_encoder(encode, rows, ks=(1, 3))
    # aaa -> aa first (hit at 1); bbbc -> bb first, then cc (hit at 2), then aa.
    assert got["mrr@1"] == pytest.approx(0.5)
    assert got["mrr@3"] == pytest.approx((1 + 1 / 2) / 2)
    assert got["recall@3"] == 1.0
    assert (got["queries"], got["corpus"]) == (2, 3)


def test_comparison_table_lists_the_change():
    table = comparison_table({"mrr@10": 0.25, "queries": 4}, {"mrr@10": 0.75, "queries": 4})
    assert table == [{"metric": "mrr@10", "before": 0.25, "after": 0.75, "change": 0.5}]
    assert comparison_table(None, {"mrr@10": 0.5})[0]["change"] is None
