"""Document-grounded chat: retrieve chunks for a prompt and put them in the system message."""

from __future__ import annotations

from dataclasses import replace

from core.document_service import DocumentService, SearchHit
from core.errors import InvalidInput

MIN_SOURCE_TOKENS = 16  # a shorter excerpt is noise, not a source
MIN_SOURCE_SCORE = 0.2  # cosine below which a chunk is unrelated to the prompt


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


def label(hit: SearchHit) -> str:
    return f"{hit.source}, page {hit.page}" if hit.page is not None else hit.source


def grounded_messages(
    tokenizer, messages: list[dict], hits: list[SearchHit], budget: int
) -> tuple[list[dict], tuple[SearchHit, ...]]:
    """Chat's "Ground on documents": the best sources in half the prompt budget, in the
    system message. Returns the messages and the sources kept."""
    sources = tuple(fit_sources(tokenizer, hits, budget // 2))
    return with_sources(messages, list(sources)), sources


def with_sources(messages: list[dict], sources: list[SearchHit]) -> list[dict]:
    """The messages with the sources appended to the system message (added if missing)."""
    if not sources:
        return messages
    block = "Answer using these sources and cite them by number:\n" + "\n".join(
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
