"""Two answers in one batch on one copy of the base weights.

Each decoding step computes both answers' next tokens in one forward pass; the model is
held with each row's adapter applying to that row only (core/adapter_rows.py), so a pair
costs less than two answers one after the other and the rows never mix.
"""

from __future__ import annotations

import threading
import time
from collections.abc import Iterator
from contextlib import closing
from dataclasses import dataclass, field

from core.generation import (
    GenerateRun,
    GenerationOptions,
    GenerationResult,
    PreparedPrompt,
    eos_ids,
    finish_reason,
    mean_logprob,
)
from core.models import LoadedModel


@dataclass
class _Row:
    prompt: PreparedPrompt
    tokens: list[int] = field(default_factory=list)
    shown: str = ""
    first_at: float | None = None
    done_at: float | None = None
    finished: bool = False


@dataclass
class PairStream:
    """Iterate for (row, text delta); `results` holds one GenerationResult per row afterwards."""

    loaded: LoadedModel
    prompts: list[PreparedPrompt]
    options: GenerationOptions
    stop_event: threading.Event = field(default_factory=threading.Event)
    results: list[GenerationResult] = field(default_factory=list)

    def __iter__(self) -> Iterator[tuple[int, str]]:
        import torch

        tokenizer = self.loaded.tokenizer
        rows = [_Row(prompt) for prompt in self.prompts]
        width = max(len(p.input_ids) for p in self.prompts)
        pad = tokenizer.pad_token_id
        ids = [[pad] * (width - len(p.input_ids)) + p.input_ids for p in self.prompts]
        mask = [[0] * (width - len(p.input_ids)) + [1] * len(p.input_ids) for p in self.prompts]
        eos = eos_ids(self.loaded)
        run = GenerateRun(
            self.loaded,
            self.options,
            torch.tensor(ids),
            torch.tensor(mask),
            self.stop_event,
        )
        started = time.perf_counter()
        with closing(iter(run)) as steps:
            for step in steps:
                now = time.perf_counter()
                for index, (row, token) in enumerate(zip(rows, step, strict=True)):
                    if row.finished:
                        continue
                    row.first_at = row.first_at or now
                    row.tokens.append(token)
                    row.done_at = now
                    row.finished = token in eos or len(row.tokens) >= self.options.max_new_tokens
                    text = tokenizer.decode(row.tokens, skip_special_tokens=True)
                    if not text.endswith("\ufffd") and len(text) > len(row.shown):
                        delta, row.shown = text[len(row.shown) :], text
                        yield index, delta
        self.results = [
            self._summarise(run.output, index, row, started, eos)
            for index, row in enumerate(rows)
        ]

    def _summarise(self, output, index: int, row: _Row, started: float, eos) -> GenerationResult:
        import torch

        confidence = None
        if output.logits and row.tokens:
            logits = torch.stack([step[index] for step in output.logits[: len(row.tokens)]])
            confidence = mean_logprob(logits, row.tokens)
        reason = finish_reason(
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
        )
