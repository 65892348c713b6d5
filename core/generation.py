"""Prompt formatting with context fitting, and streaming generation with timing and confidence."""

from __future__ import annotations

import math
import queue
import threading
import time
from collections.abc import Iterator
from contextlib import ExitStack, closing
from dataclasses import dataclass, field

from core.cpu_threads import one_thread
from core.errors import InvalidInput
from core.models import LoadedModel

PLAIN_ROLES = {"system": "System", "user": "User", "assistant": "Assistant"}


@dataclass(frozen=True, kw_only=True)
class GenerationOptions:
    max_new_tokens: int = 256
    temperature: float = 0.2  # core.generation_defaults.FALLBACK_TEMPERATURE
    top_p: float = 0.9

    def __post_init__(self) -> None:
        if not 1 <= self.max_new_tokens <= 8192:
            raise InvalidInput(f"max_new_tokens must be 1-8192, got {self.max_new_tokens}")
        if not 0.0 <= self.temperature <= 2.0:
            raise InvalidInput(f"temperature must be 0-2, got {self.temperature}")
        if not 0.0 < self.top_p <= 1.0:
            raise InvalidInput(f"top_p must be in (0, 1], got {self.top_p}")

    @property
    def sampling(self) -> bool:
        """Below 0.001 sampling is greedy in effect, and logits divided by a near-zero
        temperature overflow to inf (NaN probabilities): such a temperature means greedy."""
        return self.temperature >= 1e-3


@dataclass(frozen=True)
class PreparedPrompt:
    input_ids: list[int]
    messages: list[dict]  # what the model actually saw, after fitting
    dropped_turns: int = 0
    cut_tokens: int = 0

    @property
    def notice(self) -> str | None:
        parts = []
        if self.dropped_turns:
            parts.append(f"dropped the {self.dropped_turns} oldest message(s)")
        if self.cut_tokens:
            parts.append(f"cut the first {self.cut_tokens} token(s) of your message")
        return (
            f"The conversation was longer than the model's context: {' and '.join(parts)}."
            if parts
            else None
        )


def render_messages(tokenizer, messages: list[dict]) -> str:
    """The model's chat template, or a plain 'Role: text' format for models without one."""
    if getattr(tokenizer, "chat_template", None):
        return tokenizer.apply_chat_template(messages, tokenize=False, add_generation_prompt=True)
    lines = [f"{PLAIN_ROLES.get(m['role'], m['role'])}: {m['content']}" for m in messages]
    return "\n".join([*lines, "Assistant:"])


def encode_messages(tokenizer, messages: list[dict]) -> list[int]:
    return tokenizer(render_messages(tokenizer, messages), add_special_tokens=False)["input_ids"]


def fit_to_context(tokenizer, messages: list[dict], budget: int) -> PreparedPrompt:
    """Drop the oldest turns (never the system prompt), then cut the last message from the left."""
    system = [m for m in messages[:1] if m["role"] == "system"]
    turns = messages[len(system) :]
    dropped = 0
    while True:
        ids = encode_messages(tokenizer, system + turns)
        if len(ids) <= budget or len(turns) <= 1:
            break
        turns, dropped = turns[1:], dropped + 1
    if len(ids) <= budget:
        return PreparedPrompt(ids, system + turns, dropped)
    last = turns[-1]
    content_ids = tokenizer(last["content"], add_special_tokens=False)["input_ids"]
    overhead = len(ids) - len(content_ids)
    keep = budget - overhead
    if keep < 1:
        raise InvalidInput("the system prompt alone fills the model's context; shorten it")
    cut = len(content_ids) - keep
    shortened = {**last, "content": tokenizer.decode(content_ids[cut:])}
    final = system + [shortened]
    return PreparedPrompt(encode_messages(tokenizer, final)[-budget:], final, dropped, cut)


def check_limits(
    prompt: str, options: GenerationOptions, *, max_prompt_chars: int, max_new_tokens: int
) -> None:
    """The studio's limits on one request, checked before the model is taken."""
    if len(prompt) > max_prompt_chars:
        raise InvalidInput(
            f"the prompt has {len(prompt):,} characters; the limit is {max_prompt_chars:,}"
        )
    if options.max_new_tokens > max_new_tokens:
        raise InvalidInput(
            f"max_new_tokens is {options.max_new_tokens}; the limit is {max_new_tokens}"
        )


def prompt_budget(loaded: LoadedModel, options: GenerationOptions) -> int:
    """How many tokens the prompt may take so the answer still fits the model's context."""
    budget = loaded.context_length - options.max_new_tokens
    if budget < 1:
        raise InvalidInput(
            f"max_new_tokens ({options.max_new_tokens}) leaves no room for the"
            f" prompt in the model's context of {loaded.context_length} tokens"
        )
    return budget


@dataclass(frozen=True, kw_only=True)
class GenerationResult:
    text: str
    prompt_tokens: int
    completion_tokens: int
    latency_ms: float
    ttft_ms: float | None
    tokens_per_s: float
    confidence: float | None  # mean log-probability of the generated tokens
    finish_reason: str  # stop | length | cancelled


def turn_fields(prompt: PreparedPrompt, result: GenerationResult) -> dict:
    """What a logged turn (core.store.chatlog.TurnRecord) keeps of one generated answer."""
    return dict(
        context=prompt.messages,
        response=result.text,
        latency_ms=result.latency_ms,
        ttft_ms=result.ttft_ms,
        prompt_tokens=result.prompt_tokens,
        completion_tokens=result.completion_tokens,
        tokens_per_s=result.tokens_per_s,
        confidence=result.confidence,
        truncated_turns=prompt.dropped_turns,
        finish_reason=result.finish_reason,
    )


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


# Below this size a decoding step on a CPU is many tiny products, faster on one thread
# (core/cpu_threads.py); the prompt itself is still processed on every core.
ONE_THREAD_DECODING_PARAMS = 500_000_000


def decodes_on_one_thread(loaded: LoadedModel) -> bool:
    if loaded.device != "cpu":
        return False
    return sum(p.numel() for p in loaded.model.parameters()) < ONE_THREAD_DECODING_PARAMS


@dataclass
class GenerateRun:
    """generate() in a worker thread: iterate for each step's tokens (one per row).

    `output` is set once the steps are exhausted; a reader that goes away early sets
    `stop_event`, so generate() stops at its next token. Errors re-raise in the reader.
    """

    loaded: LoadedModel
    options: GenerationOptions
    input_ids: object  # (rows, width) tensor
    attention_mask: object
    stop_event: threading.Event
    output: object = None

    def __iter__(self) -> Iterator[list[int]]:
        import torch

        threads = ExitStack()
        one_thread_after_prompt = decodes_on_one_thread(self.loaded)
        streamer = _StepQueue(
            (lambda: threads.enter_context(one_thread())) if one_thread_after_prompt else None
        )
        kwargs = self._generate_kwargs(streamer)
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
                self.stop_event.set()
            thread.join()
        if "error" in outcome:
            raise outcome["error"]
        self.output = outcome["output"]

    def _generate_kwargs(self, streamer: _StepQueue) -> dict:
        import torch
        from transformers import StoppingCriteria, StoppingCriteriaList

        stop_event = self.stop_event

        class _StopOnEvent(StoppingCriteria):
            def __call__(self, input_ids, scores, **kwargs):
                return torch.full((input_ids.shape[0],), stop_event.is_set(), dtype=torch.bool)

        sampling = self.options.sampling
        return dict(
            input_ids=self.input_ids.to(self.loaded.device),
            attention_mask=self.attention_mask.to(self.loaded.device),
            max_new_tokens=self.options.max_new_tokens,
            do_sample=sampling,
            temperature=self.options.temperature if sampling else None,
            top_p=self.options.top_p if sampling else None,
            top_k=None,
            streamer=streamer,
            stopping_criteria=StoppingCriteriaList([_StopOnEvent()]),
            return_dict_in_generate=True,
            output_logits=True,
            pad_token_id=self.loaded.tokenizer.pad_token_id,
        )


def eos_ids(loaded: LoadedModel) -> set[int]:
    """Every token id that ends an answer, from the tokenizer and the generation config."""
    config = getattr(loaded.model.generation_config, "eos_token_id", None)
    return _ids(loaded.tokenizer.eos_token_id) | _ids(config)


def mean_logprob(logits, chosen: list[int]) -> float | None:
    """The mean log-probability of the chosen tokens under their steps' logits (rows)."""
    import torch

    tokens = torch.tensor(chosen, device=logits.device)
    logprobs = torch.log_softmax(logits.float(), dim=-1)[torch.arange(len(tokens)), tokens]
    value = logprobs.mean().item()
    return value if math.isfinite(value) else None


def finish_reason(
    tokens: list[int], *, cancelled: bool, eos: set[int], options: GenerationOptions
) -> str:
    if cancelled:
        return "cancelled"
    if tokens and tokens[-1] in eos:
        return "stop"
    return "length" if len(tokens) >= options.max_new_tokens else "stop"


@dataclass
class GenerationStream:
    """Iterate for text deltas; `result` is set once the stream is exhausted."""

    loaded: LoadedModel
    prompt: PreparedPrompt
    options: GenerationOptions
    stop_event: threading.Event = field(default_factory=threading.Event)
    result: GenerationResult | None = None

    def __iter__(self) -> Iterator[str]:
        import torch

        tokenizer = self.loaded.tokenizer
        input_ids = torch.tensor([self.prompt.input_ids])
        run = GenerateRun(
            self.loaded, self.options, input_ids, torch.ones_like(input_ids), self.stop_event
        )
        started = time.perf_counter()
        generated: list[int] = []
        shown = ""
        first_token_at = None
        with closing(iter(run)) as steps:
            for step in steps:
                first_token_at = first_token_at or time.perf_counter()
                generated += step
                text = tokenizer.decode(generated, skip_special_tokens=True)
                if text.endswith("\ufffd"):
                    continue  # an unfinished multi-byte character: wait for the next token
                if len(text) > len(shown):
                    delta, shown = text[len(shown) :], text
                    yield delta
        finished = time.perf_counter()
        self.result = self._summarise(run.output, generated, started, first_token_at, finished)

    def _summarise(self, output, generated, started, first_token_at, finished) -> GenerationResult:
        import torch

        confidence = None
        if output.logits:
            logits = torch.stack(output.logits, dim=1)[0]
            confidence = mean_logprob(logits, generated[: logits.shape[0]])
        reason = finish_reason(
            generated,
            cancelled=self.stop_event.is_set(),
            eos=eos_ids(self.loaded),
            options=self.options,
        )
        seconds = max(finished - started, 1e-9)
        return GenerationResult(
            text=self.loaded.tokenizer.decode(generated, skip_special_tokens=True),
            prompt_tokens=len(self.prompt.input_ids),
            completion_tokens=len(generated),
            latency_ms=seconds * 1000,
            ttft_ms=(first_token_at - started) * 1000 if first_token_at else None,
            tokens_per_s=len(generated) / seconds,
            confidence=confidence,
            finish_reason=reason,
        )


def _ids(value) -> set[int]:
    if value is None:
        return set()
    return set(value) if isinstance(value, (list, tuple, set)) else {value}
