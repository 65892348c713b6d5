"""Running the chosen engine: one answer as a stream of text pieces, or a batch of answers.

Above both core/serving/generation.py (prompts, options, results) and the engines that use it, so
the generation vocabulary never imports an engine.
"""

from __future__ import annotations

import threading
from collections.abc import Iterator
from dataclasses import dataclass, field

from core.serving.engines.transformers_engine import TRANSFORMERS
from core.serving.generation import GenerationOptions, GenerationResult, PreparedPrompt
from core.serving.models import LoadedModel


@dataclass
class GenerationStream:
    """Iterate for text deltas of one answer from the model's engine (transformers unless
    the model service picked a faster one); `result` is set once the stream is exhausted."""

    loaded: LoadedModel
    prompt: PreparedPrompt
    options: GenerationOptions
    stop_event: threading.Event = field(default_factory=threading.Event)
    result: GenerationResult | None = None

    def __iter__(self) -> Iterator[str]:
        rows = engine_of(self.loaded).generate(
            self.loaded, [self.prompt], self.options, self.stop_event
        )
        for _, delta in rows:
            yield delta
        self.result = rows.results[0]


def engine_of(loaded: LoadedModel):
    """The engine the model service chose for this hold of the model."""
    return TRANSFORMERS if loaded.engine is None else loaded.engine


def generate_batch(
    loaded: LoadedModel,
    prompts: list[PreparedPrompt],
    options: GenerationOptions,
    stop_event: threading.Event | None = None,
) -> list[GenerationResult]:
    """Several answers in one batch (left-padded rows, one forward pass per step)."""
    rows = engine_of(loaded).generate(
        loaded, prompts, options, stop_event or threading.Event()
    )
    for _ in rows:
        pass
    return rows.results
