"""Rows of answers from a local engine's token steps: decoding, stops, timing, results."""

from __future__ import annotations

import math
import threading
import time
from collections.abc import Callable, Iterable, Iterator
from contextlib import closing
from dataclasses import dataclass, field
from typing import TYPE_CHECKING, Protocol

from core.serving.generation import (
    GenerationOptions,
    GenerationResult,
    PreparedPrompt,
    eos_ids,
    finish_reason,
)
from core.serving.repetition import RepetitionGuard

if TYPE_CHECKING:  # annotations only: the model service picks engines, not the reverse
    from core.serving.models import LoadedModel


class TokenSteps(Protocol):
    """Iterate for one list of token ids per step (one per row); once exhausted,
    `logprobs` holds each row's chosen-token log-probabilities per step, or None."""

    logprobs: list[list[float]] | None

    def __iter__(self) -> Iterator[list[int]]: ...


class TokenEngine(Protocol):
    name: str

    def steps(
        self, loaded: LoadedModel, rows: list[list[int]], options: GenerationOptions,
        stop: Callable[[], bool],
    ) -> TokenSteps: ...


@dataclass
class _Row:
    prompt: PreparedPrompt
    guard: RepetitionGuard
    tokens: list[int] = field(default_factory=list)
    shown: str = ""
    first_at: float | None = None
    done_at: float | None = None
    finished: bool = False
    repeated: bool = False


@dataclass
class TokenRows:
    """Iterate for (row, text delta); `results` holds one GenerationResult per row afterwards.

    A row ends at an end-of-answer token, at max_new_tokens, or when it starts looping
    (finish reason "repetition"); the engine stops once every row has ended.
    """

    engine: TokenEngine
    loaded: LoadedModel
    prompts: list[PreparedPrompt]
    options: GenerationOptions
    stop_event: threading.Event = field(default_factory=threading.Event)
    results: list[GenerationResult] = field(default_factory=list)

    def __iter__(self) -> Iterator[tuple[int, str]]:
        tokenizer = self.loaded.tokenizer
        options = self.options
        rows = [
            _Row(p, RepetitionGuard(options.repeat_ngram_size, options.repeat_ngram_limit))
            for p in self.prompts
        ]
        eos = eos_ids(self.loaded)
        halt = threading.Event()
        steps = self.engine.steps(
            self.loaded,
            [p.input_ids for p in self.prompts],
            options,
            lambda: halt.is_set() or self.stop_event.is_set(),
        )
        started = time.perf_counter()
        with closing(iter(steps)) as stepping:
            for step in stepping:
                now = time.perf_counter()
                for index, (row, token) in enumerate(zip(rows, step, strict=True)):
                    if row.finished:
                        continue
                    row.first_at = row.first_at or now
                    row.tokens.append(token)
                    row.done_at = now
                    row.repeated = row.guard.feed(token)
                    row.finished = (
                        token in eos or row.repeated or len(row.tokens) >= options.max_new_tokens
                    )
                    # a token may end inside a multi-byte character: wait for the rest
                    text = tokenizer.decode(row.tokens, skip_special_tokens=True)
                    if not text.endswith("\ufffd") and len(text) > len(row.shown):
                        delta, row.shown = text[len(row.shown) :], text
                        yield index, delta
                if all(row.finished for row in rows):
                    halt.set()
        for index, row in enumerate(rows):  # what was held back, so the pieces add up to the text
            text = tokenizer.decode(row.tokens, skip_special_tokens=True)
            if len(text) > len(row.shown):
                delta, row.shown = text[len(row.shown) :], text
                yield index, delta
        logprobs = getattr(steps, "logprobs", None)
        self.results = [
            self._summarise(row, started, eos, logprobs[i] if logprobs else None)
            for i, row in enumerate(rows)
        ]

    def _summarise(self, row: _Row, started: float, eos, logprobs) -> GenerationResult:
        confidence = tokens = None
        if logprobs and row.tokens:
            chosen = logprobs[: len(row.tokens)]
            value = sum(chosen) / len(chosen)
            confidence = value if math.isfinite(value) else None
            decode = self.loaded.tokenizer.decode
            # an end-of-answer token stays (as ""): the confidence counts it too
            tokens = [(decode([token], skip_special_tokens=True), lp)
                      for token, lp in zip(row.tokens, chosen, strict=False)]
        reason = "repetition" if row.repeated else finish_reason(
            row.tokens,
            cancelled=self.stop_event.is_set() and not row.finished,
            eos=eos,
            options=self.options,
        )
        seconds = max((row.done_at or time.perf_counter()) - started, 1e-9)
        return GenerationResult(
            text=self.loaded.tokenizer.decode(row.tokens, skip_special_tokens=True),
            prompt_tokens=len(row.prompt.input_ids),
            completion_tokens=len(row.tokens),
            latency_ms=seconds * 1000,
            ttft_ms=(row.first_at - started) * 1000 if row.first_at else None,
            tokens_per_s=len(row.tokens) / seconds,
            confidence=confidence,
            finish_reason=reason,
            engine=self.engine.name,
            token_logprobs=tokens,
        )


def collect(rows: Iterable[tuple[int, str]]) -> None:
    """Run a stream of rows to its end, for callers that only want the results."""
    for _ in rows:
        pass
