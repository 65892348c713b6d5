"""The base model writes check items from chunks: a question and a short reference fact.

The bundled 135M model follows a two-example prompt far better than an instruction alone
("Question: ... / Answer: ..." replies, most of them parseable). It still invents answers,
so only items whose reference is literally in the chunk (after normalisation), short, and
not already said by the question are kept.
"""

from __future__ import annotations

import re
from dataclasses import dataclass

from core.knowledge.scoring import fact_match, normalise
from core.serving.engines.run import generate_batch
from core.serving.generation import GenerationOptions, fit_to_context

ASK = (
    "Write one question about a fact in this passage and its short answer, copied from the "
    "passage.\n\nPassage: {passage}"
)
EXAMPLES = (
    (
        "The Northwind bridge is 420 metres long. It was designed by Ada Lindqvist and opened "
        "in 1998.",
        "Question: Who designed the Northwind bridge?\nAnswer: Ada Lindqvist",
    ),
    (
        "Orders over 50 euros ship for free. Returns are accepted within 30 days of delivery.",
        "Question: Within how many days are returns accepted?\nAnswer: 30 days",
    ),
)
MAX_REFERENCE_WORDS = 5  # a name, number or date; longer replies are sentence fragments
MIN_QUESTION_WORDS = 4
MAX_PASSAGE_TOKENS = 400
WINDOW_SENTENCES = 2  # a passage as short as the examples keeps the model on one fact
_SENTENCE_END = re.compile(r"(?<=[.!?])\s+")
_REPLY = re.compile(r"question\s*:\s*(?P<q>[^\n]+?\?)\s*\n+\s*answer\s*:\s*(?P<a>[^\n]+)", re.I)


@dataclass(frozen=True)
class Written:
    question: str
    reference: str


def passages(text: str) -> list[str]:
    """A chunk cut into windows of two sentences (the passages questions are written from)."""
    sentences = [s for s in _SENTENCE_END.split(" ".join(text.split())) if s]
    return [" ".join(sentences[i : i + WINDOW_SENTENCES])
            for i in range(0, len(sentences), WINDOW_SENTENCES)]


def prompt_messages(passage: str) -> list[dict]:
    messages = []
    for example, reply in EXAMPLES:
        messages += [
            {"role": "user", "content": ASK.format(passage=example)},
            {"role": "assistant", "content": reply},
        ]
    return [*messages, {"role": "user", "content": ASK.format(passage=passage)}]


def parse(reply: str) -> Written | None:
    """The first "Question: ...? / Answer: ..." pair of a reply."""
    found = _REPLY.search(reply)
    if found is None:
        return None
    reference = found["a"].strip().rstrip(".").strip()
    return Written(" ".join(found["q"].split()), reference)


QUESTION_WORDS = frozenset(
    "what which where when many much does long name called that this with from have".split()
)


def _words(text: str) -> set[str]:
    return set(normalise(text.replace("-", " ")).split())


def _about_its_sentence(question: str, reference: str, passage: str) -> bool:
    """The question shares a content word with a sentence that states the reference: a
    question about one sentence answered from another is a wrong item."""
    asked = {w for w in _words(question) - _words(reference)
             if len(w) >= 4 and w not in QUESTION_WORDS}
    return any(asked & _words(sentence) for sentence in _SENTENCE_END.split(passage)
               if fact_match(sentence, reference))


def keep(written: Written | None, passage: str) -> bool:
    """A usable item: a real question whose short reference the passage states word for word,
    about the sentence that states it, and that does not give the reference (or its number)
    away."""
    if written is None:
        return False
    reference = normalise(written.reference)
    numbers = {w for w in reference.split() if any(c.isdigit() for c in w)}
    return (
        len(written.question.split()) >= MIN_QUESTION_WORDS
        and 0 < len(reference.split()) <= MAX_REFERENCE_WORDS
        and fact_match(passage, written.reference)
        and not fact_match(written.question, written.reference)
        and not numbers & _words(written.question)
        and _about_its_sentence(written.question, written.reference, passage)
    )


def write_items(
    loaded, passages: list[str], *, sample: bool, max_new_tokens: int = 40
) -> list[Written | None]:
    """One attempt per passage in one batch (the caller holds the base weights); None where
    the reply is unusable. Greedy first; a sampled retry gives the misses another chance."""
    tokenizer = loaded.tokenizer
    # No repetition penalty: the reply's question already uses the passage's words, and its
    # reference must repeat them word for word (with the penalty, when it still counted the
    # prompt too, the bundled model paraphrased every fact of the handbook in
    # tests/knowledge/test_knowledge_real_model.py away); the n-gram stop stays.
    options = GenerationOptions(max_new_tokens=max_new_tokens,
                                temperature=0.7 if sample else 0.0, repetition_penalty=1.0)
    budget = loaded.context_length - max_new_tokens
    prompts = []
    for passage in passages:
        ids = tokenizer(passage, add_special_tokens=False)["input_ids"][:MAX_PASSAGE_TOKENS]
        prompts.append(fit_to_context(tokenizer, prompt_messages(tokenizer.decode(ids)), budget))
    replies = [result.text.strip() for result in generate_batch(loaded, prompts, options)]
    written = [parse(reply) for reply in replies]
    return [w if keep(w, passage) else None for w, passage in zip(written, passages, strict=True)]
