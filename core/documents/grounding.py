"""Document-grounded answers: retrieve chunks for a prompt, put them in the system message, and
tie the answer's sentences to them with [n] markers. Chat and Compare share these steps."""

from __future__ import annotations

import re
from dataclasses import replace

from core.documents.service import DocumentService, SearchHit
from core.errors import InvalidInput
from core.serving.generation import encode_messages

MIN_SOURCE_TOKENS = 16  # a shorter excerpt is noise, not a source
MIN_SOURCE_SCORE = 0.2  # cosine below which a chunk is unrelated to the prompt
MAX_SOURCES = 20
# Sources a grounded answer reads unless asked otherwise (chat, compare, knowledge checks).
# Two, because a small model answers from fewer passages better: on bench/knowledge.py the
# bundled model's grounded score went 8/44 -> 13/44 (base) and 27/44 -> 36/44 (taught
# adapter) from 4 sources to 2, with the answer's passage among the first two for 41 of 44.
SOURCES_K = 2
MIN_CITE_OVERLAP = 0.3  # share of a sentence's words that must appear in a source to cite it
MIN_CITE_WORDS = 2  # and at least this many, so a one-word sentence never gets a marker
SOURCES_INSTRUCTION = (
    "Answer using these sources. End each sentence that uses one with its number, like [1]:"
)
WORD = re.compile(r"[a-z0-9]+")
SENTENCE = re.compile(r"[^.!?\n]+[.!?]*")
CITED = re.compile(r"\[(\d{1,2})\]")
STOPWORDS = frozenset(
    "the and for are was were with that this from has have had you your not but can will its "
    "they them their our there here what which who how when where why into than then also".split()
)


def check_k(k: int) -> None:
    if not 1 <= k <= MAX_SOURCES:
        raise InvalidInput(f"documents_k must be 1-{MAX_SOURCES}, got {k}")


def retrieve(documents: DocumentService | None, prompt: str, k: int) -> list[SearchHit]:
    if documents is None:
        raise InvalidInput("document grounding is not available in this studio")
    return [hit for hit in documents.search(prompt, k=k) if hit.score >= MIN_SOURCE_SCORE]


def fit_sources(tokenizer, hits: list[SearchHit], budget: int) -> list[SearchHit]:
    """Keep the best sources that fit in `budget` tokens of the chat model, cutting the last."""
    kept = []
    for hit in hits:
        ids = tokenizer(hit.text, add_special_tokens=False)["input_ids"]
        if budget < MIN_SOURCE_TOKENS:
            break
        if len(ids) > budget:
            hit = replace(hit, text=tokenizer.decode(ids[:budget]).strip() + " …")
        kept.append(hit)
        budget -= len(ids) + 8  # the label and line breaks around each source
    return kept


def ground(
    tokenizer, messages: list[dict], hits: list[SearchHit], budget: int
) -> tuple[list[dict], tuple[SearchHit, ...]]:
    """The messages with the best sources that fit, and those sources: at most half the prompt
    budget, fewer while the whole conversation with them would not fit the budget."""
    sources = fit_sources(tokenizer, hits, budget // 2)
    while sources and len(encode_messages(tokenizer, with_sources(messages, sources))) > budget:
        sources.pop()  # labels and the instruction cost tokens that fit_sources only estimates
    return with_sources(messages, sources), tuple(sources)


def label(hit: SearchHit) -> str:
    return f"{hit.source}, page {hit.page}" if hit.page is not None else hit.source


def with_sources(messages: list[dict], sources: list[SearchHit]) -> list[dict]:
    """The messages with the sources appended to the system message (added if missing)."""
    if not sources:
        return messages
    block = SOURCES_INSTRUCTION + "\n" + "\n".join(
        f"[{number}] ({label(hit)}) {hit.text}" for number, hit in enumerate(sources, start=1)
    )
    if messages and messages[0]["role"] == "system":
        first = {"role": "system", "content": f"{messages[0]['content']}\n\n{block}"}
        return [first, *messages[1:]]
    return [{"role": "system", "content": block}, *messages]


def citations(sources: list[SearchHit] | tuple, *, excerpt_chars: int = 240) -> str:
    """Plain-text list of the sources, numbered as in the prompt, for showing under an answer."""
    lines = []
    for number, hit in enumerate(sources, start=1):
        excerpt = " ".join(hit.text.split())
        if len(excerpt) > excerpt_chars:
            excerpt = excerpt[:excerpt_chars].rstrip() + " …"
        lines.append(f"[{number}] {label(hit)} · score {hit.score:.2f}\n    {excerpt}")
    return "\n".join(lines)


def content_words(text: str) -> set[str]:
    return {w for w in WORD.findall(text.lower()) if len(w) > 2 and w not in STOPWORDS}


def mark_citations(answer: str, sources: list[SearchHit] | tuple) -> str:
    """The answer with [n] at the end of the sentence sharing the most words with source n.

    A source the answer already cites as [n] keeps the model's own marker; a source that no
    sentence overlaps enough (MIN_CITE_OVERLAP of the sentence's words, at least MIN_CITE_WORDS
    of them) gets none, so a marker always points at text the source supports.
    """
    cited = {int(number) for number in CITED.findall(answer)}
    spans = [(m, words) for m in SENTENCE.finditer(answer) if (words := content_words(m.group()))]
    marks: dict[int, list[int]] = {}
    for number, hit in enumerate(sources, start=1):
        if number in cited:
            continue
        source = content_words(hit.text)
        best, best_share = None, MIN_CITE_OVERLAP
        for index, (_, words) in enumerate(spans):
            shared = len(words & source)
            if shared >= MIN_CITE_WORDS and shared / len(words) >= best_share:
                best, best_share = index, shared / len(words)
        if best is not None:
            marks.setdefault(best, []).append(number)
    parts, last = [], 0
    for index in sorted(marks):
        match = spans[index][0]
        end = match.start() + len(match.group().rstrip().rstrip(".!?").rstrip())
        parts += [answer[last:end], " " + "".join(f"[{n}]" for n in marks[index])]
        last = end
    parts.append(answer[last:])
    return "".join(parts)
