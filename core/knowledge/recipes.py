"""Recipes that put the team's facts into an adapter: chat rows built from documents and from
corrected turns.

A small model does not learn a fact from reading its passage once: it needs the fact as the
answer to several differently worded questions. "Teach documents" takes every fact-bearing
sentence of the documents and asks for it in several ways: questions derived from the sentence
itself (the answer span turned into "what", a topic question, a completion), questions the
base model writes with the sentence in view, and a share of grounded variants whose system
message holds retrieved passages including distractors (retrieval-augmented fine-tuning), so
the adapter also learns to read its context. "Learn corrections" repeats each corrected answer
under reworded prompts. Both mix in a small general replay set so unrelated answers survive.
"""

from __future__ import annotations

import json
import random
import re
from collections.abc import Callable, Sequence
from dataclasses import dataclass
from pathlib import Path

from core.documents.grounding import with_sources
from core.documents.service import SearchHit

REPLAY_SET = Path(__file__).with_name("replay.jsonl")
STOPWORDS = frozenset(
    "a an the of in on at to for from by with and or is are was were be been it its this that "
    "these those as into than then so such can may must every each per which who what when "
    "where how do does did has have had not no".split()
)
# numbers with an optional unit word, e-mail addresses, quoted text, names of Capitalised Words
_SPANS = re.compile(
    r"\"[^\"]+\"|[\w.+-]+@[\w-]+\.[\w.]+|\d[\d,.]*(?:\s?(?:%|[a-zA-Z]+))?"
    r"|(?<!^)(?<![.!?]\s)[A-Z][\w-]*(?:\s+[A-Z0-9][\w-]*)*"
)
_SENTENCE_END = re.compile(r"(?<=[.!?])\s+|\n+")
Write = Callable[[list[str]], list[str]]  # prompts -> texts, in order (core.datasets.synthesis)


@dataclass(frozen=True)
class Fact:
    sentence: str
    topic: str  # the document's title
    chunk: dict  # the stored chunk it came from (id, document_id, source, page, text)
    spans: tuple[str, ...]  # what a question about it asks for, most specific first


def fact_sentences(chunks: Sequence[dict], topic: str) -> list[Fact]:
    """Sentences that carry something specific (a number, a name, a quote), once each.

    A name found in three or more sentences of the document is its subject (the product,
    the company), not an answer."""
    found, seen = [], set()
    for chunk in chunks:
        pieces = [" ".join(p.split()) for p in _SENTENCE_END.split(chunk["text"]) if p.strip()]
        # a window may start or end inside a sentence; its neighbour holds it whole
        if pieces and not re.match(r"[A-Z0-9#\"']", pieces[0]):
            pieces = pieces[1:]
        if pieces and not re.search(r"[.!?\"']$", pieces[-1]):
            pieces = pieces[:-1]
        for sentence in pieces:
            if sentence.startswith("#") or not 4 <= len(sentence.split()) <= 60:
                continue
            if sentence.lower() not in seen:
                seen.add(sentence.lower())
                found.append((sentence, chunk))
    counts: dict[str, int] = {}
    for sentence, _ in found:
        for span in set(answer_spans(sentence)):
            counts[span] = counts.get(span, 0) + 1
    facts = []
    for sentence, chunk in found:
        spans = tuple(s for s in answer_spans(sentence)
                      if counts[s] < 3 or any(c.isdigit() for c in s))
        if spans:
            facts.append(Fact(sentence, topic, chunk, spans))
    return facts


def answer_spans(sentence: str) -> list[str]:
    """The specific parts of a sentence a question would ask for: numbers (with their unit),
    addresses and quotes first, then names; later ones first within each group."""
    body = sentence.rstrip(".!?")
    spans = []
    for match in _SPANS.finditer(body):
        span = match.group(0).strip(" ,")
        words = span.split()
        if len(words) > 1 and words[-1].lower() in STOPWORDS:
            span = " ".join(words[:-1])
        if span and match.start() > 0:
            spans.append(span)
    specific = [s for s in spans if not s[0].isupper()]
    names = [s for s in spans if s[0].isupper()]
    return list(dict.fromkeys([*reversed(specific), *reversed(names)]))


def keywords(text: str, *, drop: str = "") -> list[str]:
    dropped = {w.lower() for w in re.findall(r"[\w@.'-]+", drop)}
    words = [w.strip(".,;:!?\"'()") for w in text.split()]
    return [w for w in words if w and w.lower() not in STOPWORDS and w.lower() not in dropped]


def derived_questions(fact: Fact, *, spans: int = 2) -> list[str]:
    """Questions built from the sentence itself: they need no model and never miss the fact."""
    body = fact.sentence.rstrip(".!?")
    questions = []
    for span in fact.spans[:spans]:
        questions.append(body.replace(span, "what", 1) + "?")
        before = body[: body.find(span)].strip()
        if len(before.split()) >= 3:
            questions.append(f"Complete this fact about {fact.topic}: {before} ...")
    topic_words = " ".join(keywords(body, drop=fact.spans[0])[:8])
    questions.append(f"What do our documents say about {topic_words}?")
    return list(dict.fromkeys(questions))


QUESTION_PROMPT = (
    "Write one question that the following sentence answers. Reply with the question only."
    "\n\nSentence: {sentence}"
)


def good_question(question: str, fact: Fact) -> bool:
    """A written question is kept if it is a question, shares words with the sentence and
    does not give the answer away."""
    words = question.split()
    if not question.endswith("?") or not 3 <= len(words) <= 30:
        return False
    shared = set(map(str.lower, keywords(question))) & set(map(str.lower, keywords(fact.sentence)))
    return len(shared) >= 2 and fact.spans[0].lower() not in question.lower()


def chat(question: str, answer: str, meta: dict, system: str | None = None) -> dict:
    messages = [{"role": "user", "content": question}, {"role": "assistant", "content": answer}]
    if system:
        messages.insert(0, {"role": "system", "content": system})
    return {"messages": messages, "meta": meta}


def hit_of(chunk: dict, score: float = 1.0) -> SearchHit:
    return SearchHit(chunk_id=chunk["id"], document_id=chunk["document_id"],
                     source=chunk["source"], page=chunk.get("page"), score=score,
                     text=chunk["text"])


def grounded(question: str, fact: Fact, search: Callable[[str, int], list[SearchHit]],
             passages: int, rng: random.Random) -> tuple[str, str]:
    """(system message, answer): the fact's chunk among retrieved distractors, cited."""
    hits = [h for h in search(question, passages + 1) if h.chunk_id != fact.chunk["id"]]
    sources = [*hits[: passages - 1], hit_of(fact.chunk)]
    rng.shuffle(sources)
    number = 1 + next(i for i, h in enumerate(sources) if h.chunk_id == fact.chunk["id"])
    system = with_sources([], sources)[0]["content"]
    return system, f"{fact.sentence} [{number}]"


def replay_rows(count: int, seed: int) -> list[dict]:
    """General questions with plain answers (not the general-ability check's questions)."""
    items = [json.loads(line) for line in REPLAY_SET.read_text().splitlines() if line.strip()]
    picked = random.Random(seed).sample(items, min(count, len(items)))
    return [chat(i["question"], i["answer"], {"label": "replay", "source": "replay"})
            for i in picked]


@dataclass(frozen=True, kw_only=True)
class TeachOptions:
    written_questions: int = 1  # questions the base model writes per fact (0: none)
    grounded_share: float = 0.35  # facts that also get a grounded (retrieval-augmented) row
    passages: int = 2  # passages in a grounded row: the fact's chunk and distractors
    replay_share: float = 0.1  # general replay rows per fact row


def teach_rows(documents: Sequence[tuple[str, list[dict]]], *, search, writer: Write | None,
               options: TeachOptions = TeachOptions(), seed: int = 0,
               progress: Callable[[float, str], None] = lambda f, m: None) -> list[dict]:
    """Chat rows that teach the facts of (title, chunks) documents."""
    rng = random.Random(seed)
    facts = [f for title, chunks in documents for f in fact_sentences(chunks, title)]
    written: list[list[str]] = [[] for _ in facts]
    if writer is not None and options.written_questions:
        prompts = [QUESTION_PROMPT.format(sentence=f"{f.topic}. {f.sentence}")
                   for f in facts for _ in range(options.written_questions)]
        progress(0.1, f"writing {len(prompts)} questions")
        texts = writer(prompts)
        for n, text in enumerate(texts):
            fact = facts[n // options.written_questions]
            if good_question(text, fact):
                written[n // options.written_questions].append(text)
    rows = []
    for n, (fact, extra) in enumerate(zip(facts, written, strict=True)):
        progress(0.5 + 0.4 * n / max(len(facts), 1), f"fact {n + 1} of {len(facts)}")
        meta = {"label": "fact", "source": "document", "document_id": fact.chunk["document_id"],
                "chunk_id": fact.chunk["id"], "file": fact.chunk["source"],
                "page": fact.chunk.get("page"), "fact": fact.sentence}
        questions = derived_questions(fact)
        for question in questions:
            rows.append(chat(question, fact.sentence, meta))
        for question in dict.fromkeys(extra):
            rows.append(chat(question, fact.sentence,
                             {**meta, "label": "synthetic_qa", "synthetic": True}))
        if search is not None and rng.random() < options.grounded_share:
            question = rng.choice(list(extra) or questions)
            system, answer = grounded(question, fact, search, options.passages, rng)
            rows.append(chat(question, answer, {**meta, "label": "grounded_qa"}, system))
    rows += replay_rows(round(len(rows) * options.replay_share), seed)
    return rows


PARAPHRASE_TEMPLATES = (
    "{q}",
    "Quick question: {q}",
    "Can you tell me this: {q}",
    "{k}?",
    "I need to know: {k}",
    "Please answer briefly. {q}",
)


def correction_rows(turns: Sequence[dict], *, writer: Write | None, paraphrases: int = 1,
                    replay_share: float = 0.25, seed: int = 0) -> list[dict]:
    """Each corrected turn as it was asked (its grounded context kept, fitted at training),
    ungrounded under reworded prompts, and written paraphrases; plus general replay rows.

    `turns` are sft rows whose last message is the correction."""
    rows = []
    written: list[list[str]] = [[] for _ in turns]
    prompts = [t["messages"][-2]["content"] for t in turns]
    if writer is not None and paraphrases:
        from core.datasets.synthesis import PARAPHRASE_PROMPT

        texts = writer([PARAPHRASE_PROMPT.format(text=p) for p in prompts
                        for _ in range(paraphrases)])
        for n, text in enumerate(texts):
            if text.endswith("?") and 2 <= len(text.split()) <= 40:
                written[n // paraphrases].append(text)
    for turn, prompt, extra in zip(turns, prompts, written, strict=True):
        answer = turn["messages"][-1]["content"]
        meta = {**turn.get("meta", {}), "label": "correction"}
        if turn["messages"][0]["role"] == "system":
            rows.append({"messages": turn["messages"], "meta": meta})
        key = " ".join(keywords(prompt.rstrip("?")))
        variants = [t.format(q=prompt, k=key) for t in PARAPHRASE_TEMPLATES]
        for question in dict.fromkeys([*variants, *extra]):
            rows.append(chat(question, answer, {**meta, "label": "correction_variant"}))
    rows += replay_rows(round(len(rows) * replay_share), seed)
    return rows
