"""A chat turn end to end: validate, fit the context, stream the answer, log the turn."""

from __future__ import annotations

import uuid
from collections.abc import Iterator
from dataclasses import asdict, dataclass, field
from datetime import datetime

from core.errors import InvalidInput, NotFound
from core.generation import GenerationOptions, GenerationStream, fit_to_context
from core.models import ModelService
from core.store.chatlog import ChatLog, TurnRecord

ROLES = ("user", "assistant")


@dataclass(frozen=True, kw_only=True)
class ChatRequest:
    prompt: str
    history: list[dict] = field(default_factory=list)  # earlier {role, content} turns
    system_prompt: str | None = None
    options: GenerationOptions = field(default_factory=GenerationOptions)
    conversation_id: str | None = None
    user: str = "anonymous"
    model: str | None = None

    def __post_init__(self) -> None:
        if not self.prompt or not self.prompt.strip():
            raise InvalidInput("the prompt is empty")
        for turn in self.history:
            if turn.get("role") not in ROLES or not isinstance(turn.get("content"), str):
                raise InvalidInput("each history turn needs a role (user/assistant) and content")
        if not self.user.strip():
            raise InvalidInput("the user name is empty")

    def messages(self) -> list[dict]:
        system = [{"role": "system", "content": self.system_prompt}] if self.system_prompt else []
        history = [{"role": t["role"], "content": t["content"]} for t in self.history]
        return [*system, *history, {"role": "user", "content": self.prompt}]


@dataclass(frozen=True)
class ChatUpdate:
    """One step of a streamed answer; `turn` is set on the last one, after it was logged."""

    text: str
    notice: str | None = None
    turn: TurnRecord | None = None


class ChatService:
    def __init__(
        self, models: ModelService, log: ChatLog, *, max_prompt_chars: int, max_new_tokens: int
    ) -> None:
        self.models = models
        self.log = log
        self.max_prompt_chars = max_prompt_chars
        self.max_new_tokens = max_new_tokens

    def check_limits(self, request: ChatRequest) -> None:
        if len(request.prompt) > self.max_prompt_chars:
            raise InvalidInput(
                f"the prompt has {len(request.prompt):,} characters; the limit is "
                f"{self.max_prompt_chars:,}"
            )
        if request.options.max_new_tokens > self.max_new_tokens:
            raise InvalidInput(
                f"max_new_tokens is {request.options.max_new_tokens}; the limit is "
                f"{self.max_new_tokens}"
            )

    def check_model(self, name: str | None) -> None:
        if name not in (None, "", self.models.name):
            raise NotFound(f"unknown model {name!r}; this studio serves {self.models.name!r}")

    def stream(self, request: ChatRequest, stop_event=None) -> Iterator[ChatUpdate]:
        self.check_model(request.model)
        self.check_limits(request)
        with self.models.use(None) as loaded:
            budget = loaded.context_length - request.options.max_new_tokens
            if budget < 1:
                raise InvalidInput(
                    f"max_new_tokens ({request.options.max_new_tokens}) leaves no room for the"
                    f" prompt in the model's context of {loaded.context_length} tokens"
                )
            prompt = fit_to_context(loaded.tokenizer, request.messages(), budget)
            stream = GenerationStream(loaded, prompt, request.options)
            if stop_event is not None:
                stream.stop_event = stop_event
            text = ""
            for delta in stream:
                text += delta
                yield ChatUpdate(text, prompt.notice)
        turn = self._record(request, prompt, stream.result)
        yield ChatUpdate(turn.response, prompt.notice, turn)

    def complete(self, request: ChatRequest) -> ChatUpdate:
        *_, last = self.stream(request)
        return last

    def _record(self, request: ChatRequest, prompt, result) -> TurnRecord:
        conversation_id = request.conversation_id or uuid.uuid4().hex
        turn = TurnRecord(
            id=uuid.uuid4().hex,
            conversation_id=conversation_id,
            turn_index=self.log.next_turn_index(conversation_id),
            created_at=datetime.now(),
            user_id=request.user,
            prompt=request.prompt,
            context=prompt.messages,
            response=result.text,
            model_id=self.models.name,
            adapter_version=None,
            settings={**asdict(request.options), "system_prompt": request.system_prompt},
            latency_ms=result.latency_ms,
            ttft_ms=result.ttft_ms,
            prompt_tokens=result.prompt_tokens,
            completion_tokens=result.completion_tokens,
            tokens_per_s=result.tokens_per_s,
            confidence=result.confidence,
            truncated_turns=prompt.dropped_turns,
            finish_reason=result.finish_reason,
        )
        self.log.add_turn(turn)
        return turn
