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

from core.documents.grounding import SOURCES_K, with_sources
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


AUXILIARIES = frozenset("is are was were can must will should may has have".split())
PREPOSITIONS = frozenset("in on at within for from to by with after before below above".split())
TAIL_STARTS = PREPOSITIONS | frozenset("of per across a an each every so when against".split())
QUALIFIERS = ("up to", "at least", "at most", "more than", "less than", "over", "under")
ROLES = re.compile(r"\b(founder|chief|executive|ceo|head|director|manager|president|chair\w*"
                   r"|owner|author|designer|inventor|leader)\b", re.I)
TIME_UNITS = re.compile(r"(second|minute|hour|day|week|month|year)s?", re.I)
MONEY_UNITS = re.compile(r"(euro|dollar|pound|cent|krone|franc|yen|eur|usd|gbp)s?", re.I)
WEIGHT_UNITS = re.compile(r"(gram|kilogram|kg|g|tonne|ton|pound|lb|ounce)s?", re.I)
DISTANCE_UNITS = re.compile(r"(metre|meter|kilometre|kilometer|km|mile|foot|feet|cm|mm)s?", re.I)
PERCENT_UNITS = re.compile(r"%|percent|per cent", re.I)
MONTHS = re.compile(r"\b(january|february|march|april|may|june|july|august|september|october"
                    r"|november|december)\b", re.I)


def _wh(span: str, before: str, head: str) -> list[str]:
    """Question phrases that ask for `span`; `before` is the word in front of it, `head` the
    sentence up to it."""
    words = span.split()
    unit = words[-1] if len(words) > 1 and words[0][0].isdigit() else ""
    if re.fullmatch(r"(1[89]|20)\d\d", span):
        return ["In what year", "When"]
    if MONTHS.search(span):
        return ["When", "On what date"] if re.search(r"\d", span) else ["When"]
    if span[0].isdigit():
        if before == "every":
            return ["How often"]
        if MONEY_UNITS.fullmatch(unit):
            return ["How much", f"How many {unit}"]
        if TIME_UNITS.fullmatch(unit):
            return ["How long", f"How many {unit}"]
        if WEIGHT_UNITS.fullmatch(unit):
            return ["How much", f"How many {unit}"]
        if DISTANCE_UNITS.fullmatch(unit):
            return ["How far", f"How many {unit}"]
        if PERCENT_UNITS.fullmatch(unit):
            return ["What percentage"]
        return [f"How many {unit}".strip()]
    if before in ("in", "at"):
        return ["Where"]
    return ["Who"] if ROLES.search(head) else ["What"]


def _base_verb(word: str) -> str:
    """The plain form of a present-tense verb (weighs -> weigh, carries -> carry)."""
    if word == "has":
        return "have"
    if word.endswith("ies"):
        return word[:-3] + "y"
    if re.search(r"(ss|sh|ch|x|o)es$", word):
        return word[:-2]
    return word[:-1]


def _question(body: str, span: str) -> list[str]:
    at = body.find(span)
    head, tail = body[:at].split(), body[at + len(span):].strip()
    if len(head) < 2 or re.match(r"[\dA-Z]", tail):
        return []
    numeric = span[0].isdigit()
    if tail.startswith(","):
        tail = ""  # an apposition says more about the answer, not the question
    elif tail and not numeric and head[-1] not in ("called", "named"):
        return []  # a name inside a phrase ("the Heron calibration kit") is no answer alone
    if numeric and (word := re.match(r"[a-z]+\b", tail)) and word[0] not in TAIL_STARTS:
        return []  # the unit goes on past the span ("2 working days")
    for qualifier in QUALIFIERS:
        if " ".join(head[-len(qualifier.split()):]).lower() == qualifier:
            head = head[: -len(qualifier.split())]
    before = head[-1].lower()
    prep = ""
    if before in PREPOSITIONS or before == "every":
        head = head[:-1]
        prep = before if before in PREPOSITIONS else ""
    elif not numeric and before in ("the", "a", "an"):
        head = head[:-1]
    if not head or head[0].lower() in PREPOSITIONS or head[0].lower().endswith("ly") or (
            head[0].lower() in ("never", "always", "please", "do", "don't")):
        return []
    verb = next((i for i, w in enumerate(head) if i and w in AUXILIARIES), None)
    if verb is not None:
        subject, rest, aux = head[:verb], head[verb + 1:], head[verb]
    else:
        verb = next((i for i, w in enumerate(head) if i and w.islower()
                     and w not in STOPWORDS and re.fullmatch(r"[a-z]+[^s]s", w)), None)
        if verb is None:
            return []
        subject, rest = head[:verb], [_base_verb(head[verb]), *head[verb + 1:]]
        aux = "does"
    if not numeric and not rest and before not in ("in", "at"):
        rest = []  # "X is NAME" -> "What is X?"
    elif not numeric and before not in ("in", "at") and rest[-1] not in ("called", "named"):
        return []
    if subject[0].lower() in ("the", "a", "an", "every", "each", "one", "our", "its"):
        subject = [subject[0].lower(), *subject[1:]]
    if numeric and tail.startswith("of "):
        tail = ""  # "within 45 days of delivery": the asked-for span takes its "of" along
    # a trailing phrase ("in the city of Tromsø") is asked with and without: people drop it
    droppable = bool(tail) and tail.split()[0].lower() in PREPOSITIONS | {"across"}
    tails = [tail, ""] if droppable else [tail]
    out = []
    for wh in _wh(span, before, " ".join(head)):
        if prep and wh.startswith(("How many", "What")) and wh != "What percentage":
            wh = f"{prep.capitalize()} {wh[0].lower()}{wh[1:]}"
        elif prep and wh == "What percentage":
            wh = f"{prep.capitalize()} what percentage"
        out += [f"{wh} {aux} {' '.join([*subject, *rest, t]).strip()}?" for t in tails]
    return out


def natural_questions(fact: Fact, *, spans: int = 2) -> list[str]:
    """Wh-questions in the form people ask them ("How much does the K9 weigh?"), built by
    moving the asked-for span out of the sentence and inverting its verb: an auxiliary
    (is, was, can, must, ...) moves in front of the subject, a present-tense verb becomes
    "does ... <verb>". Sentences of another shape give none (the derived questions remain)."""
    body = fact.sentence.rstrip(".!?")
    return list(dict.fromkeys(q for span in fact.spans[:spans] for q in _question(body, span)))


QUESTION_PROMPT = (
    "Write a question about {topic} whose answer is the given answer.\n\n"
    "Sentence: The Northwind bridge is 420 metres long.\nAnswer: 420 metres\n"
    "Question: How long is the Northwind bridge?\n\n"
    "Sentence: Returns are accepted within 30 days of delivery.\nAnswer: 30 days\n"
    "Question: Within how many days can you return an order?\n\n"
    "Sentence: The bridge was designed by Ada Lindqvist.\nAnswer: Ada Lindqvist\n"
    "Question: Who designed the Northwind bridge?\n\n"
    "Sentence: {sentence}\nAnswer: {answer}\nQuestion:"
)


def first_question(text: str) -> str:
    """The written question: the reply up to its first question mark."""
    end = text.find("?")
    return " ".join(text[: end + 1].split()) if end > 0 else ""


def good_question(question: str, fact: Fact, answer: str | None = None) -> bool:
    """A written question is kept if it is a question, shares words with the sentence (one
    beyond the document's title) and does not give the answer away."""
    words = question.split()
    if not question.endswith("?") or not 3 <= len(words) <= 30:
        return False
    shared = set(map(str.lower, keywords(question))) & set(map(str.lower, keywords(fact.sentence)))
    # words of the document's title are shared by every fact of it: one more must be
    about = shared - set(map(str.lower, keywords(fact.topic)))
    return (len(shared) >= 2 and bool(about)
            and (answer or fact.spans[0]).lower() not in question.lower())


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
    grounded_share: float = 0.6  # facts that also get a grounded (retrieval-augmented) row
    passages: int = SOURCES_K  # passages in a grounded row, as grounded answers read them
    replay_share: float = 0.15  # general replay rows per fact row


def teach_rows(documents: Sequence[tuple[str, list[dict]]], *, search, writer: Write | None,
               options: TeachOptions = TeachOptions(), seed: int = 0,
               progress: Callable[[float, str], None] = lambda f, m: None) -> list[dict]:
    """Chat rows that teach the facts of (title, chunks) documents."""
    rng = random.Random(seed)
    facts = [f for title, chunks in documents for f in fact_sentences(chunks, title)]
    written: list[list[str]] = [[] for _ in facts]
    if writer is not None and options.written_questions:
        # each written question asks for one of the fact's spans, in turn
        asked = [(n, f.spans[i % len(f.spans)]) for n, f in enumerate(facts)
                 for i in range(options.written_questions)]
        prompts = [QUESTION_PROMPT.format(topic=facts[n].topic, sentence=facts[n].sentence,
                                          answer=span) for n, span in asked]
        progress(0.1, f"writing {len(prompts)} questions")
        for (n, span), text in zip(asked, writer(prompts), strict=True):
            question = first_question(text)
            if good_question(question, facts[n], span):
                written[n].append(question)
    rows = []
    for n, (fact, extra) in enumerate(zip(facts, written, strict=True)):
        progress(0.5 + 0.4 * n / max(len(facts), 1), f"fact {n + 1} of {len(facts)}")
        meta = {"label": "fact", "source": "document", "document_id": fact.chunk["document_id"],
                "chunk_id": fact.chunk["id"], "file": fact.chunk["source"],
                "page": fact.chunk.get("page"), "fact": fact.sentence}
        natural = natural_questions(fact)
        questions = list(dict.fromkeys(
            [*natural, *(r for q in natural for r in reworded(q)), *derived_questions(fact)]))
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


# Question openings that ask the same thing in other words (first match wins).
REWORDINGS = (
    (r"in what year\b", ("When", "Which year")),
    (r"in (which|what) (city|country|town|place)\b", ("Where", r"In what \2")),
    (r"when\b", ("At what time",)),
    (r"which\b", ("What",)),
    (r"who is\b", ("Tell me who is", "Which person is")),
    (r"who\b", ("Which person",)),
    (r"how often\b", ("How frequently",)),
    (r"how long\b", ("For how long",)),
    (r"what is the name of\b", ("What is",)),
    (r"what is\b", ("What's", "Tell me")),
    (r"how (many|much)\b", (r"About how \1",)),
)


def reworded(question: str) -> list[str]:
    """The question with its opening said another way ("In what year" -> "When"); a
    statement-like opening ("Tell me") ends the sentence with a full stop."""
    for pattern, replacements in REWORDINGS:
        found = re.match(pattern, question, re.I)
        if not found:
            continue
        out = []
        for replacement in replacements:
            text = found.expand(replacement) + question[found.end():]
            if text.startswith("Tell me"):
                text = text.rstrip("?") + "."
            out.append(text)
        return out
    return []


def correction_rows(turns: Sequence[dict], *, writer: Write | None, paraphrases: int = 1,
                    replay_share: float = 0.15, seed: int = 0) -> list[dict]:
    """Each corrected turn as it was asked (its grounded context kept, fitted at training),
    ungrounded under reworded prompts, and written paraphrases; plus general replay rows.

    `turns` are sft rows whose last message is the correction."""
    rows = []
    written: list[list[str]] = [[] for _ in turns]
    prompts = [t["messages"][-2]["content"] for t in turns]
    if writer is not None and paraphrases:
        from core.datasets.synthesis import PARAPHRASE_PROMPT

        # sampled twice per asked paraphrase: a second wording costs little and helps most
        per_prompt = 2 * paraphrases
        texts = writer([PARAPHRASE_PROMPT.format(text=p) for p in prompts
                        for _ in range(per_prompt)])
        for n, text in enumerate(texts):
            question = first_question(text)
            if 2 <= len(question.split()) <= 40:
                written[n // per_prompt].append(question)
    for turn, prompt, extra in zip(turns, prompts, written, strict=True):
        answer = turn["messages"][-1]["content"]
        meta = {**turn.get("meta", {}), "label": "correction"}
        if turn["messages"][0]["role"] == "system":
            rows.append({"messages": turn["messages"], "meta": meta})
        key = " ".join(keywords(prompt.rstrip("?")))
        variants = [t.format(q=q, k=key) for q in [prompt, *reworded(prompt)]
                    for t in PARAPHRASE_TEMPLATES[: None if q == prompt else 3]]
        for question in dict.fromkeys([*variants, *extra]):
            rows.append(chat(question, answer, {**meta, "label": "correction_variant"}))
    rows += replay_rows(round(len(rows) * replay_share), seed)
    return rows
