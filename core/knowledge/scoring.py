"""Answer scores shared by evaluation, the knowledge check and the benchmarks."""

from __future__ import annotations

import re
import string
from collections import Counter
from dataclasses import dataclass
from functools import cache

_ARTICLES = re.compile(r"\b(a|an|the)\b")
_PUNCTUATION = str.maketrans("", "", string.punctuation)


def normalise(text: str) -> str:
    """SQuAD normalisation: lower case, no punctuation or articles, single spaces."""
    return " ".join(_ARTICLES.sub(" ", text.lower().translate(_PUNCTUATION)).split())


def exact_match(answer: str, reference: str) -> float:
    return float(normalise(answer) == normalise(reference))


def fact_match(answer: str, reference: str) -> bool:
    """The reference fact appears in the answer, as whole words after normalisation.

    A short reference ("Paris", "14 days") is the fact itself; an answer may say more
    around it ("The capital is Paris."), which still counts.
    """
    want = normalise(reference)
    return bool(want) and f" {want} " in f" {normalise(answer)} "


def token_f1(answer: str, reference: str) -> float:
    got, want = normalise(answer).split(), normalise(reference).split()
    if not got or not want:
        return float(got == want)
    common = sum((Counter(got) & Counter(want)).values())
    if common == 0:
        return 0.0
    precision, recall = common / len(got), common / len(want)
    return 2 * precision * recall / (precision + recall)


@cache
def _rouge_scorer():
    from rouge_score import rouge_scorer  # imports nltk: loaded on first use only

    return rouge_scorer.RougeScorer(["rougeL"])


def rouge_l(answer: str, reference: str) -> float:
    """ROUGE-L F1 with rouge-score's tokenisation (lower case, punctuation dropped), so
    "Paris." equals "Paris" and the figures compare with other tools."""
    from rouge_score import tokenize

    if not tokenize.tokenize(answer, None) and not tokenize.tokenize(reference, None):
        return 1.0  # both empty: as token_f1
    return float(_rouge_scorer().score(reference, answer)["rougeL"].fmeasure)


@dataclass(frozen=True)
class AnswerScore:
    match: bool  # the reference fact is in the answer
    f1: float  # token F1 against the reference


def score_answer(answer: str, reference: str) -> AnswerScore:
    return AnswerScore(match=fact_match(answer, reference), f1=token_f1(answer, reference))
