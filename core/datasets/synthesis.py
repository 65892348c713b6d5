"""Text written by the base model for datasets: QA pairs from chunks, paraphrases."""

from __future__ import annotations

import re

from core.serving.engines.run import generate_batch
from core.serving.generation import GenerationOptions, fit_to_context
from core.serving.models import LoadedModel, ModelService

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


def write_batch(loaded: LoadedModel, prompts: list[list[dict]], options: GenerationOptions,
                budget: int) -> list[str]:
    """Several chats answered in one batch through the one generation path (left-padded rows,
    one forward pass per new token, the engine's repetition control)."""
    prepared = [fit_to_context(loaded.tokenizer, messages, budget) for messages in prompts]
    return [result.text for result in generate_batch(loaded, prepared, options)]


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

    def write_many(self, prompts: list[str], *, batch_size: int = 16) -> list[str]:
        """Several prompts per forward pass (see write_batch); one seed per batch."""
        import torch

        out = []
        for start in range(0, len(prompts), batch_size):
            with self.models.use(None) as loaded:
                torch.manual_seed(self.seed * 1_000_003 + self.calls)
                self.calls += 1
                budget = loaded.context_length - self.options.max_new_tokens
                chats = [[{"role": "user", "content": p}] for p in
                         prompts[start:start + batch_size]]
                out += [clean(t) for t in write_batch(loaded, chats, self.options, budget)]
        return out

    @property
    def model_name(self) -> str:
        return self.models.name
