"""The reference engine: transformers' generate() in a worker thread, one token per row per step."""

from __future__ import annotations

import queue
import threading
from collections.abc import Callable, Iterator
from contextlib import ExitStack
from dataclasses import dataclass
from typing import TYPE_CHECKING

from core.serving.cpu_threads import one_thread

if TYPE_CHECKING:  # annotations only: models and generation run engines, not the reverse
    from core.serving.generation import GenerationOptions
    from core.serving.models import LoadedModel

# Below this size a decoding step on a CPU is many tiny products, faster on one thread
# (core/serving/cpu_threads.py); the prompt itself is still processed on every core.
ONE_THREAD_DECODING_PARAMS = 500_000_000


def decodes_on_one_thread(loaded: LoadedModel) -> bool:
    if loaded.device != "cpu":
        return False
    return sum(p.numel() for p in loaded.model.parameters()) < ONE_THREAD_DECODING_PARAMS


class _StepQueue:
    """The streamer generate() calls: first the prompt, then one token per row per step.

    `on_first_step` runs in generate()'s thread once the prompt is processed."""

    def __init__(self, on_first_step=None) -> None:
        self.steps: queue.Queue = queue.Queue()
        self._prompt_seen = False
        self._on_first_step = on_first_step

    def put(self, value) -> None:
        if not self._prompt_seen:
            self._prompt_seen = True
            return
        if self._on_first_step is not None:
            self._on_first_step()
            self._on_first_step = None
        self.steps.put(value.reshape(-1).tolist())

    def end(self) -> None:
        self.steps.put(None)


@dataclass
class GenerateRun:
    """generate() in a worker thread over left-padded rows: iterate for each step's tokens.

    A reader that goes away early makes generate() stop at its next token, as does `stop()`
    turning true. Errors re-raise in the reader. `logprobs` is set once the steps are
    exhausted: each row's chosen-token log-probabilities.
    """

    loaded: LoadedModel
    options: GenerationOptions
    rows: list[list[int]]
    stop: Callable[[], bool]
    logprobs: list[list[float]] | None = None

    def __iter__(self) -> Iterator[list[int]]:
        import torch

        threads = ExitStack()
        streamer = _StepQueue(
            (lambda: threads.enter_context(one_thread()))
            if decodes_on_one_thread(self.loaded) else None
        )
        gone = threading.Event()
        kwargs = self._generate_kwargs(streamer, lambda: gone.is_set() or self.stop())
        model = self.loaded.model
        outcome: dict = {}

        def work() -> None:
            try:
                with torch.inference_mode(), threads:
                    outcome["output"] = model.generate(**kwargs)
            except BaseException as error:  # re-raised in the caller's thread
                outcome["error"] = error
                streamer.end()

        thread = threading.Thread(target=work, daemon=True)
        thread.start()
        completed = False
        try:
            while (step := streamer.steps.get()) is not None:
                yield step
            completed = True
        finally:
            if not completed:  # the reader went away: let generate() stop at the next token
                gone.set()
            thread.join()
        if "error" in outcome:
            raise outcome["error"]
        self.logprobs = chosen_logprobs(outcome["output"], len(self.rows))

    def _generate_kwargs(self, streamer: _StepQueue, stop: Callable[[], bool]) -> dict:
        import torch
        from transformers import (
            LogitsProcessorList,
            RepetitionPenaltyLogitsProcessor,
            StoppingCriteria,
            StoppingCriteriaList,
        )

        class _StopWhenAsked(StoppingCriteria):
            def __call__(self, input_ids, scores, **kwargs):
                return torch.full((input_ids.shape[0],), stop(), dtype=torch.bool)

        pad = self.loaded.tokenizer.pad_token_id
        width = max(len(row) for row in self.rows)
        ids = [[pad] * (width - len(row)) + row for row in self.rows]
        mask = [[0] * (width - len(row)) + [1] * len(row) for row in self.rows]
        options = self.options
        sampling = options.sampling
        return dict(
            input_ids=torch.tensor(ids, device=self.loaded.device),
            attention_mask=torch.tensor(mask, device=self.loaded.device),
            max_new_tokens=options.max_new_tokens,
            do_sample=sampling,
            temperature=options.temperature if sampling else None,
            top_p=options.top_p if sampling else None,
            top_k=None,
            # on the answer's own tokens only: a grounded answer copies from its prompt
            logits_processor=LogitsProcessorList(
                [RepetitionPenaltyLogitsProcessor(options.repetition_penalty,
                                                  prompt_ignore_length=width)]
                if options.repetition_penalty != 1.0 else []),
            streamer=streamer,
            stopping_criteria=StoppingCriteriaList([_StopWhenAsked()]),
            return_dict_in_generate=True,
            output_logits=True,
            pad_token_id=pad,
        )


def chosen_logprobs(output, rows: int) -> list[list[float]] | None:
    """Each row's log-probability of the token it chose at each step (raw logits, so
    sampling settings do not change a confidence)."""
    import torch

    if not output.logits:
        return None
    logits = torch.stack(output.logits, dim=1).float()  # (rows, steps, vocab)
    steps = logits.shape[1]
    chosen = output.sequences[:, -steps:].to(logits.device)
    values = torch.log_softmax(logits, dim=-1).gather(-1, chosen.unsqueeze(-1)).squeeze(-1)
    return values.reshape(rows, steps).tolist()


class TransformersEngine:
    name = "transformers"

    def steps(self, loaded, rows, options, stop) -> GenerateRun:
        return GenerateRun(loaded, options, rows, stop)

    def generate(self, loaded, prompts, options, stop_event):
        from core.serving.engines.rows import TokenRows

        return TokenRows(self, loaded, prompts, options, stop_event)


TRANSFORMERS = TransformersEngine()
