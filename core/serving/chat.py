"""A chat turn end to end: validate, fit the context, stream the answer, log the turn."""

from __future__ import annotations

import uuid
from collections.abc import Iterator
from dataclasses import asdict, dataclass, field, replace
from datetime import datetime

from core.documents.grounding import SOURCES_K, check_k, ground, retrieve
from core.errors import InvalidInput, NotFound
from core.serving.engines.run import GenerationStream
from core.serving.generation import (
    GenerationOptions,
    check_limits,
    fit_to_context,
    prompt_budget,
    turn_fields,
)
from core.serving.models import ModelService
from core.serving.routing import SERVED, Route
from core.serving.stop_sequences import check_stop_sequences, visible_text
from core.store.chatlog import ChatLog, TurnRecord

ROLES = ("user", "assistant")
HISTORY_FACTOR = 10  # earlier turns may hold this many prompts' worth of characters


@dataclass(frozen=True, kw_only=True)
class ChatRequest:
    prompt: str
    history: list[dict] = field(default_factory=list)  # earlier {role, content} turns
    system_prompt: str | None = None
    options: GenerationOptions = field(default_factory=GenerationOptions)
    conversation_id: str | None = None
    user: str = "anonymous"
    model: str | None = None
    use_documents: bool = False  # ground the answer on the top chunks of the document store
    documents_k: int = SOURCES_K
    stop: tuple[str, ...] = ()  # the answer ends before the first of these
    response_id: str | None = None  # for callers that announce the turn's id before it ends

    def __post_init__(self) -> None:
        check_stop_sequences(self.stop)
        if not self.prompt or not self.prompt.strip():
            raise InvalidInput("the prompt is empty")
        for turn in self.history:
            if turn.get("role") not in ROLES or not isinstance(turn.get("content"), str):
                raise InvalidInput("each history turn needs a role (user/assistant) and content")
        if not self.user.strip():
            raise InvalidInput("the user name is empty")
        check_k(self.documents_k)

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
    sources: tuple = ()  # core.documents.service.SearchHit the answer was grounded on
    # on the last one: (token text, log-probability) of the generated tokens, when known
    logprobs: list[tuple[str, float]] | None = None


class ChatService:
    def __init__(
        self,
        models: ModelService,
        log: ChatLog,
        *,
        max_prompt_chars: int,
        max_new_tokens: int,
        experiments=None,  # comparison.experiments.ExperimentService: A/B arms decide the model
        documents=None,  # core.documents.service.DocumentService: grounding
        registry=None,  # serving.registry.ModelRegistry: adapters by id; default: the promoted
        router=None,  # serving.routing.Router: picks an adapter per prompt when none was chosen
    ) -> None:
        self.models = models
        self.registry = registry
        self.router = router
        self.log = log
        self.experiments = experiments
        self.documents = documents
        self.max_prompt_chars = max_prompt_chars
        self.max_new_tokens = max_new_tokens

    def check_limits(self, request: ChatRequest) -> None:
        check_limits(
            request.prompt,
            request.options,
            max_prompt_chars=self.max_prompt_chars,
            max_new_tokens=self.max_new_tokens,
        )
        # The history is cut to fit the context anyway; this only bounds the work of reading it.
        history = sum(len(t["content"]) for t in request.history) + len(request.system_prompt or "")
        if history > HISTORY_FACTOR * self.max_prompt_chars:
            raise InvalidInput(
                f"the history and system prompt have {history:,} characters; "
                f"the limit is {HISTORY_FACTOR * self.max_prompt_chars:,}"
            )

    def check_model(self, name: str | None) -> None:
        self.adapter_for(name)

    def adapter_for(self, name: str | None) -> tuple[str | None, str | None]:
        """(adapter folder, adapter version) for a model name; no name: the promoted adapter."""
        if name in ("base", self.models.name):
            return None, None
        if not name:
            active = self.registry.active() if self.registry else None
            return (active.adapter_dir, active.id) if active else (None, None)
        if self.registry is not None:
            entry = self.registry.store.get(name)
            if entry is not None:
                return entry.adapter_dir, entry.id
        raise NotFound(f"unknown model {name!r}; use {self.models.name!r} or a registered adapter")

    def stream(self, request: ChatRequest, stop_event=None) -> Iterator[ChatUpdate]:
        self.check_model(request.model)
        self.check_limits(request)
        arm = self.experiments.assign(request.user, request.model) if self.experiments else None
        route = self.route_for(request, arm)
        adapter, version = (
            (arm.model.adapter_dir, arm.model.adapter_version) if arm
            else self.adapter_for(route.model_id)
        )
        hits = retrieve(self.documents, request.prompt, request.documents_k) if (
            request.use_documents
        ) else []
        with self.models.answering(adapter) as loaded:
            budget = prompt_budget(loaded, request.options)
            messages = arm.prepare(request.messages()) if arm else request.messages()
            messages, sources = ground(loaded.tokenizer, messages, hits, budget)
            prompt = fit_to_context(loaded.tokenizer, messages, budget)
            stream = GenerationStream(loaded, prompt, request.options)
            if stop_event is not None:
                stream.stop_event = stop_event
            text, stopped = "", False
            for delta in stream:
                if stopped:
                    continue  # generation ends at its next token
                text += delta
                shown, stopped = visible_text(text, request.stop)
                if stopped:
                    stream.stop_event.set()
                yield ChatUpdate(shown, prompt.notice, sources=sources)
        result = replace(stream.result, text=shown, finish_reason="stop") if stopped else (
            stream.result
        )
        turn = self._record(request, prompt, result, arm, version, sources, route)
        yield ChatUpdate(turn.response, prompt.notice, turn, sources, result.token_logprobs)

    def route_for(self, request: ChatRequest, arm=None) -> Route:
        """Who answers: an explicit choice > the running experiment's arm > a route > served."""
        if request.model:
            return Route(request.model, "explicit")
        if arm:
            return Route(arm.model.spec, f"experiment:{arm.arm}")
        return self.router.route(request.prompt) if self.router else Route(None, SERVED)

    def complete(self, request: ChatRequest) -> ChatUpdate:
        *_, last = self.stream(request)
        return last

    def _record(
        self, request: ChatRequest, prompt, result, arm=None, version=None, sources=(), route=None
    ) -> TurnRecord:
        conversation_id = request.conversation_id or uuid.uuid4().hex
        turn = TurnRecord(
            id=request.response_id or uuid.uuid4().hex,
            conversation_id=conversation_id,
            turn_index=self.log.next_turn_index(conversation_id),
            created_at=datetime.now(),
            user_id=request.user,
            prompt=request.prompt,
            model_id=self.models.name,
            adapter_version=version,
            settings={
                **asdict(request.options),
                "system_prompt": request.system_prompt,
                "engine": result.engine,  # which engine generated the answer
                **({"stop": list(request.stop)} if request.stop else {}),
            },
            **turn_fields(prompt, result),
            retrieved_chunk_ids=[hit.chunk_id for hit in sources] if sources else None,
            route=route.reason if route else None,
        )
        self.log.add_turn(turn)
        if arm:
            self.experiments.record_turn(turn.id, arm)
        return turn
