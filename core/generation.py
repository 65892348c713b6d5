"""Prompt formatting with context fitting, and streaming generation with timing and confidence."""

from __future__ import annotations

import math
import queue
import threading
import time
from collections.abc import Iterator
from dataclasses import dataclass, field

from core.errors import InvalidInput
from core.models import LoadedModel

PLAIN_ROLES = {"system": "System", "user": "User", "assistant": "Assistant"}


@dataclass(frozen=True, kw_only=True)
class GenerationOptions:
    max_new_tokens: int = 256
    temperature: float = 0.7
    top_p: float = 0.9

    def __post_init__(self) -> None:
        if not 1 <= self.max_new_tokens <= 8192:
            raise InvalidInput(f"max_new_tokens must be 1-8192, got {self.max_new_tokens}")
        if not 0.0 <= self.temperature <= 2.0:
            raise InvalidInput(f"temperature must be 0-2, got {self.temperature}")
        if not 0.0 < self.top_p <= 1.0:
            raise InvalidInput(f"top_p must be in (0, 1], got {self.top_p}")


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


class _TokenQueue:
    """The streamer interface generate() calls: first the prompt, then each new token."""

    def __init__(self) -> None:
        self.tokens: queue.Queue = queue.Queue()
        self._prompt_seen = False

    def put(self, value) -> None:
        if not self._prompt_seen:
            self._prompt_seen = True
            return
        for token in value.reshape(-1).tolist():
            self.tokens.put(token)

    def end(self) -> None:
        self.tokens.put(None)


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
        from transformers import StoppingCriteria, StoppingCriteriaList

        stop_event = self.stop_event

        class _StopOnEvent(StoppingCriteria):
            def __call__(self, input_ids, scores, **kwargs):
                return torch.full((input_ids.shape[0],), stop_event.is_set(), dtype=torch.bool)

        model, tokenizer = self.loaded.model, self.loaded.tokenizer
        input_ids = torch.tensor([self.prompt.input_ids], device=self.loaded.device)
        streamer = _TokenQueue()
        sampling = self.options.temperature > 0
        kwargs = dict(
            input_ids=input_ids,
            attention_mask=torch.ones_like(input_ids),
            max_new_tokens=self.options.max_new_tokens,
            do_sample=sampling,
            temperature=self.options.temperature if sampling else None,
            top_p=self.options.top_p if sampling else None,
            top_k=None,
            streamer=streamer,
            stopping_criteria=StoppingCriteriaList([_StopOnEvent()]),
            return_dict_in_generate=True,
            output_logits=True,
            pad_token_id=tokenizer.pad_token_id,
        )
        outcome: dict = {}

        def work() -> None:
            try:
                with torch.inference_mode():
                    outcome["output"] = model.generate(**kwargs)
            except BaseException as error:  # re-raised in the caller's thread
                outcome["error"] = error
                streamer.end()

        started = time.perf_counter()
        thread = threading.Thread(target=work, daemon=True)
        thread.start()
        generated: list[int] = []
        shown = ""
        first_token_at = None
        completed = False
        try:
            while (token := streamer.tokens.get()) is not None:
                first_token_at = first_token_at or time.perf_counter()
                generated.append(token)
                text = tokenizer.decode(generated, skip_special_tokens=True)
                if text.endswith("\ufffd"):
                    continue  # an unfinished multi-byte character: wait for the next token
                if len(text) > len(shown):
                    delta, shown = text[len(shown) :], text
                    yield delta
            completed = True
        finally:
            if not completed:  # the reader went away: let generate() stop at the next token
                stop_event.set()
            thread.join()
        if "error" in outcome:
            raise outcome["error"]
        finished = time.perf_counter()
        self.result = self._summarise(
            outcome["output"], generated, started, first_token_at, finished
        )

    def _summarise(self, output, generated, started, first_token_at, finished) -> GenerationResult:
        import torch

        tokenizer = self.loaded.tokenizer
        eos = set(_as_list(tokenizer.eos_token_id)) | set(
            _as_list(getattr(self.loaded.model.generation_config, "eos_token_id", None))
        )
        confidence = None
        if output.logits:
            logits = torch.stack(output.logits, dim=1)[0].float()
            chosen = torch.tensor(generated[: logits.shape[0]], device=logits.device)
            logprobs = torch.log_softmax(logits, dim=-1)[torch.arange(len(chosen)), chosen]
            value = logprobs.mean().item()
            confidence = value if math.isfinite(value) else None
        if self.stop_event.is_set():
            reason = "cancelled"
        elif generated and generated[-1] in eos:
            reason = "stop"
        else:
            reason = "length" if len(generated) >= self.options.max_new_tokens else "stop"
        seconds = max(finished - started, 1e-9)
        return GenerationResult(
            text=tokenizer.decode(generated, skip_special_tokens=True),
            prompt_tokens=len(self.prompt.input_ids),
            completion_tokens=len(generated),
            latency_ms=seconds * 1000,
            ttft_ms=(first_token_at - started) * 1000 if first_token_at else None,
            tokens_per_s=len(generated) / seconds,
            confidence=confidence,
            finish_reason=reason,
        )


def _as_list(value) -> list:
    if value is None:
        return []
    return list(value) if isinstance(value, (list, tuple, set)) else [value]
