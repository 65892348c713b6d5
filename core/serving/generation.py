"""Prompt formatting with context fitting, and streaming generation with timing and confidence."""

from __future__ import annotations

from dataclasses import dataclass
from typing import TYPE_CHECKING

from core.errors import InvalidInput

if TYPE_CHECKING:  # annotations only: the engines, which generation must not import, need these
    from core.serving.models import LoadedModel

PLAIN_ROLES = {"system": "System", "user": "User", "assistant": "Assistant"}


@dataclass(frozen=True, kw_only=True)
class GenerationOptions:
    max_new_tokens: int = 256
    temperature: float = 0.2  # core.serving.defaults.FALLBACK_TEMPERATURE
    top_p: float = 0.9
    # Repetition control, on by default: a penalty on tokens already in the answer (not the
    # prompt, which a grounded answer copies from; 1 = off),
    # and a stop once the last `repeat_ngram_size` tokens appeared `repeat_ngram_limit`
    # times (0 = off); such an answer ends with finish_reason "repetition".
    repetition_penalty: float = 1.1
    repeat_ngram_size: int = 8
    repeat_ngram_limit: int = 3

    def __post_init__(self) -> None:
        if not 1 <= self.max_new_tokens <= 8192:
            raise InvalidInput(f"max_new_tokens must be 1-8192, got {self.max_new_tokens}")
        if not 0.0 <= self.temperature <= 2.0:
            raise InvalidInput(f"temperature must be 0-2, got {self.temperature}")
        if not 0.0 < self.top_p <= 1.0:
            raise InvalidInput(f"top_p must be in (0, 1], got {self.top_p}")
        if not 1.0 <= self.repetition_penalty <= 2.0:
            raise InvalidInput(
                f"repetition_penalty must be 1-2 (1: off), got {self.repetition_penalty}"
            )
        if not 2 <= self.repeat_ngram_size <= 64:
            raise InvalidInput(f"repeat_ngram_size must be 2-64, got {self.repeat_ngram_size}")
        if not 0 <= self.repeat_ngram_limit <= 100:
            raise InvalidInput(
                f"repeat_ngram_limit must be 0-100 (0: off), got {self.repeat_ngram_limit}"
            )

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


def prepare_prompt(
    loaded: LoadedModel, messages: list[dict], options: GenerationOptions
) -> PreparedPrompt:
    """The conversation fitted to what the model's context leaves after the answer."""
    return fit_to_context(loaded.tokenizer, messages, prompt_budget(loaded, options))


@dataclass(frozen=True, kw_only=True)
class GenerationResult:
    text: str
    prompt_tokens: int
    completion_tokens: int
    latency_ms: float
    ttft_ms: float | None
    tokens_per_s: float
    confidence: float | None  # mean log-probability of the generated tokens
    finish_reason: str  # stop | length | repetition | cancelled
    engine: str | None = None  # which engine generated it
    # (token text, log-probability) of each answer token, when the engine has them
    token_logprobs: list[tuple[str, float]] | None = None


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


def eos_ids(loaded: LoadedModel) -> set[int]:
    """Every token id that ends an answer, from the tokenizer and the generation config."""
    config = getattr(loaded.model.generation_config, "eos_token_id", None)
    return _ids(loaded.tokenizer.eos_token_id) | _ids(config)


def finish_reason(
    tokens: list[int], *, cancelled: bool, eos: set[int], options: GenerationOptions
) -> str:
    if cancelled:
        return "cancelled"
    if tokens and tokens[-1] in eos:
        return "stop"
    return "length" if len(tokens) >= options.max_new_tokens else "stop"


def _ids(value) -> set[int]:
    if value is None:
        return set()
    return set(value) if isinstance(value, (list, tuple, set)) else {value}
