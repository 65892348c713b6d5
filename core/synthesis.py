"""Text written by the base model for datasets: QA pairs from chunks, paraphrases."""

from __future__ import annotations

import re

from core.generation import GenerationOptions, GenerationStream, prepare_prompt
from core.models import ModelService

QUESTION_PROMPT = (
    "Read the passage and write one question that it answers. Reply with the question only."
    "\n\nPassage:\n{passage}"
)
ANSWER_PROMPT = (
    "Answer the question using only the passage.\n\nPassage:\n{passage}\n\nQuestion: {question}"
)
PARAPHRASE_PROMPT = (
    "Rewrite the following text in different words, keeping its meaning. "
    "Reply with the rewritten text only.\n\nText:\n{text}"
)


def clean(text: str) -> str:
    """One tidy paragraph; drops a leading 'Question:'/'Answer:' style label the model echoes."""
    text = re.sub(r"^\s*(question|answer|rewrite|rewritten text)\s*:\s*", "", text, flags=re.I)
    return re.sub(r"\s+", " ", text).strip()


class Writer:
    """Sampled, bounded generations with the base weights (no adapter).

    Sampling (not greedy) because small models loop on greedy decoding; each call reseeds
    torch from (seed, call number), so the same build writes the same text again.
    """

    def __init__(self, models: ModelService, *, seed: int = 0, max_new_tokens: int = 96) -> None:
        self.models = models
        self.seed = seed
        self.calls = 0
        self.options = GenerationOptions(max_new_tokens=max_new_tokens, temperature=0.7)

    def write(self, prompt: str) -> str:
        import torch

        with self.models.use(None) as loaded:
            torch.manual_seed(self.seed * 1_000_003 + self.calls)
            self.calls += 1
            prepared = prepare_prompt(loaded, [{"role": "user", "content": prompt}], self.options)
            stream = GenerationStream(loaded, prepared, self.options)
            return clean("".join(stream))

    def question_answer(self, passage: str) -> tuple[str, str]:
        question = self.write(QUESTION_PROMPT.format(passage=passage))
        answer = self.write(ANSWER_PROMPT.format(passage=passage, question=question))
        return question, answer

    def paraphrase(self, text: str) -> str:
        return self.write(PARAPHRASE_PROMPT.format(text=text))

    @property
    def model_name(self) -> str:
        return self.models.name
