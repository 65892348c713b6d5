"""Routes for health, chat turns, feedback and the interaction log."""

from __future__ import annotations

import json
from typing import Annotated, Literal

from fastapi import APIRouter, Query, Request
from fastapi.responses import StreamingResponse
from pydantic import ConfigDict, Field
from starlette.concurrency import iterate_in_threadpool

from api.bodies import MAX_INT, FilterBody
from api.bodies import Body as Strict
from api.login import request_user
from core.documents.grounding import SOURCES_K
from core.errors import RefineryError
from core.feedback.ratings import Feedback
from core.services import VERSION, Services
from core.serving.chat import ChatRequest, ChatUpdate
from core.serving.defaults import GenerationDefaults
from core.serving.generation import GenerationOptions

# the generation options a chat or compare body may set; None falls back to the model defaults
OPTION_FIELDS = ("max_new_tokens", "temperature", "top_p", "repetition_penalty",
                 "repeat_ngram_size", "repeat_ngram_limit")


class LogQuery(FilterBody):
    model_config = ConfigDict(extra="ignore")  # this route always let unknown fields pass

    limit: int = Field(100, ge=1, le=1000)
    offset: int = Field(0, ge=0, le=MAX_INT)


class Turn(Strict):
    role: Literal["user", "assistant"]
    content: str


class ChatBody(Strict):
    prompt: str
    model: str | None = None
    use_documents: bool = False
    documents_k: int = SOURCES_K
    user: str = "anonymous"
    conversation_id: str | None = None
    history: list[Turn] = Field(default_factory=list)
    system_prompt: str | None = None
    # None: the served model's defaults (core.serving.defaults)
    max_new_tokens: int | None = None
    temperature: float | None = None
    top_p: float | None = None
    repetition_penalty: float = GenerationOptions.repetition_penalty
    repeat_ngram_size: int = GenerationOptions.repeat_ngram_size
    repeat_ngram_limit: int = GenerationOptions.repeat_ngram_limit  # 0: no repetition stop
    stop: list[str] = Field(default_factory=list)  # the answer ends before the first of these
    stream: bool = False

    def to_request(self, defaults: GenerationDefaults) -> ChatRequest:
        return ChatRequest(
            prompt=self.prompt,
            history=[t.model_dump() for t in self.history],
            system_prompt=self.system_prompt,
            options=defaults.options(**{name: getattr(self, name) for name in OPTION_FIELDS}),
            conversation_id=self.conversation_id,
            user=self.user,
            model=self.model,
            use_documents=self.use_documents,
            documents_k=self.documents_k,
            stop=tuple(self.stop),
        )


class FeedbackBody(Strict):
    response_id: str
    rating: int | None = None
    thumb: Literal["up", "down"] | None = None
    correction: str | None = None
    tags: list[str] | None = None
    user: str = "anonymous"


def turn_json(update: ChatUpdate) -> dict:
    turn = update.turn
    return {
        "response_id": turn.id,
        "conversation_id": turn.conversation_id,
        "text": turn.response,
        "model": turn.model_id,
        "adapter_version": turn.adapter_version,
        "route": turn.route,
        "latency_ms": round(turn.latency_ms, 1),
        "ttft_ms": None if turn.ttft_ms is None else round(turn.ttft_ms, 1),
        "tokens": turn.completion_tokens,
        "prompt_tokens": turn.prompt_tokens,
        "tokens_per_s": round(turn.tokens_per_s, 2),
        "confidence": turn.confidence,
        "finish_reason": turn.finish_reason,
        "notice": update.notice,
        "sources": [source_json(hit) for hit in update.sources],
    }


def source_json(hit) -> dict:
    return {
        "id": hit.chunk_id,
        "document": hit.source,
        "document_id": hit.document_id,
        "page": hit.page,
        "score": round(hit.score, 4),
        "text": hit.text[:300],
    }


def build_chat_router(services: Services) -> APIRouter:
    router = APIRouter()

    @router.get("/health")
    def health() -> dict:
        return {
            "status": "ok",
            "version": VERSION,
            "model": services.models.name,
            "loaded_models": [services.models.name] if services.models.is_loaded else [],
            "schema_version": services.db.schema_version("chatlog"),
        }

    @router.post("/chat")
    def chat(body: ChatBody, http: Request):  # sync: checks read the registry, in the pool
        body.user = request_user(http, body.user)
        request = body.to_request(services.defaults.get())
        if not body.stream:
            with services.admission.slot():
                return turn_json(services.chat.complete(request))
        services.chat.check_model(request.model)
        services.chat.check_limits(request)
        services.admission.check()  # 429 before the stream starts; its place is taken inside
        return StreamingResponse(
            iterate_in_threadpool(_server_sent_events(services, request)),
            media_type="text/event-stream",
        )

    @router.post("/feedback")
    def feedback(body: FeedbackBody, http: Request) -> dict:
        body.user = request_user(http, body.user)
        record = services.feedback.rate(Feedback(**body.model_dump()))
        return {
            "response_id": record.interaction_id,
            "user": record.rater,
            "rating": record.rating,
            "thumb": record.thumb,
            "correction": record.correction,
            "tags": record.tags,
            "updated_at": record.updated_at.isoformat(),
        }

    @router.get("/interactions")
    def interactions(query: Annotated[LogQuery, Query()]) -> dict:
        flt = query.to_filter()
        frame = services.log.query(flt, limit=query.limit, offset=query.offset)
        return {
            "total": services.log.count(flt),
            "items": json.loads(frame.to_json(orient="records", date_format="iso")),
        }

    return router


def _server_sent_events(services: Services, request: ChatRequest):
    try:
        with services.admission.slot():
            for update in services.chat.stream(request):
                payload = turn_json(update) if update.turn else {"text": update.text}
                yield f"data: {json.dumps(payload)}\n\n"
    except RefineryError as error:  # headers are sent: report in-band
        payload = {"error": error.message, "detail": error.detail}
        yield f"event: error\ndata: {json.dumps(payload)}\n\n"
    except Exception as error:
        yield f"event: error\ndata: {json.dumps({'error': str(error)})}\n\n"
