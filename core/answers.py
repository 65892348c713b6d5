"""Greedy answers to a list of prompts from resolved weights, with progress and cancel."""

from __future__ import annotations

import threading
from collections.abc import Callable

from core.errors import RefineryError
from core.generation import GenerationOptions, GenerationStream, fit_to_context
from core.models import ModelService
from core.modelspec import ResolvedModel

Progress = Callable[[int, int], None]


class Cancelled(RefineryError):
    """The person stopped a long computation; nothing was cached."""


def answer_prompts(
    models: ModelService,
    target: ResolvedModel,
    prompts: list[str],
    *,
    max_new_tokens: int = 64,
    progress: Progress | None = None,
    cancel: threading.Event | None = None,
) -> list[dict]:
    """Greedy answers one by one (each with its real latency); the model is held per answer."""
    options = GenerationOptions(max_new_tokens=max_new_tokens, temperature=0.0)
    results = []
    for done, prompt in enumerate(prompts, start=1):
        if cancel is not None and cancel.is_set():
            raise Cancelled("generation was cancelled")
        with models.use(target.adapter_dir) as loaded:
            budget = loaded.context_length - max_new_tokens
            prepared = fit_to_context(
                loaded.tokenizer, [{"role": "user", "content": prompt}], budget
            )
            stream = GenerationStream(loaded, prepared, options)
            for _ in stream:
                pass
        result = stream.result
        results.append({"answer": result.text, "latency_ms": result.latency_ms})
        if progress is not None:
            progress(done, len(prompts))
    return results


def answer_with_each(
    models: ModelService,
    targets: list[ResolvedModel],
    prompts: list[str],
    *,
    max_new_tokens: int = 64,
    progress: Progress | None = None,
    cancel: threading.Event | None = None,
) -> list[list[dict]]:
    """Every target's answers to the same prompts; progress counts over all of them."""
    total = len(prompts) * len(targets)
    answers = []
    for index, target in enumerate(targets):
        offset = index * len(prompts)

        def step(done: int, _: int, offset: int = offset) -> None:
            if progress is not None:
                progress(offset + done, total)

        answers.append(answer_prompts(
            models, target, prompts,
            max_new_tokens=max_new_tokens, progress=step, cancel=cancel,
        ))
    return answers
