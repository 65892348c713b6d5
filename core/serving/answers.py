"""Greedy answers to a list of prompts from resolved weights, in batches, with progress
and cancel."""

from __future__ import annotations

import threading
from collections.abc import Callable

from core.errors import RefineryError
from core.serving.engines.run import generate_batch
from core.serving.generation import GenerationOptions, prepare_prompt
from core.serving.models import ModelService
from core.serving.modelspec import ResolvedModel

Progress = Callable[[int, int], None]
BATCH = 8  # prompts per forward pass: more rows per step, yet progress and cancel stay prompt


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
    """Greedy answers, BATCH prompts per forward pass; the model is held per batch.
    Each answer's latency is its row's time from the batch's start to its last token."""
    options = GenerationOptions(max_new_tokens=max_new_tokens, temperature=0.0)
    results = []
    for start in range(0, len(prompts), BATCH):
        if cancel is not None and cancel.is_set():
            raise Cancelled("generation was cancelled")
        batch = prompts[start : start + BATCH]
        with models.use(target.adapter_dir) as loaded:
            prepared = [
                prepare_prompt(loaded, [{"role": "user", "content": p}], options) for p in batch
            ]
            answers = generate_batch(loaded, prepared, options, cancel)
        results += [{"answer": a.text, "latency_ms": a.latency_ms} for a in answers]
        if progress is not None:
            progress(len(results), len(prompts))
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
