"""OpenAI-compatible API under /v1: POST /chat/completions and GET /models.

Existing OpenAI clients (the openai SDK, LangChain, Open WebUI) talk to Refinery as they would
to any OpenAI-compatible server. Every completion is a chat turn of the chat service, logged like
one from /api/v1/chat (same login, limits and 429 queue), and its id comes back in the
`x-refinery-response-id` header and the `refinery_response_id` field, so the answer can be rated
through POST /api/v1/feedback. `logprobs: true` returns each answer token's log-probability
(in the last chunk when streamed), so another Refinery using this server as its `openai` engine
records confidence; `repetition_penalty` (vLLM's extra field) is honoured. Features Refinery does
not have (several choices, tools, top_logprobs alternatives, JSON output, presence/frequency
penalties, images) are refused with a 400 rather than silently ignored; bookkeeping fields
(metadata, store, seed, ...) are ignored.
"""

from __future__ import annotations

import json
import math
import time
import uuid
from typing import Annotated, Any

from fastapi import APIRouter, Depends, Request
from fastapi.responses import JSONResponse, StreamingResponse
from pydantic import ConfigDict, Field
from starlette.concurrency import iterate_in_threadpool

from api.attribution import attributed_to_login
from api.bodies import MAX_INT, MAX_QUERY_CHARS, MAX_TEXT_CHARS, Body
from api.errors import STATUS, openai_error
from api.login import api_user, request_user
from core.errors import InvalidInput, RefineryError
from core.services import Services
from core.serving.chat import ChatRequest, ChatUpdate

AUTO = "auto"  # the model /api/v1/chat picks when none is named: a route, else the promoted one
BASE = "base"
RESPONSE_ID_HEADER = "x-refinery-response-id"
SYSTEM_ROLES = ("system", "developer")
LOWEST_LOGPROB = -9999.0  # what OpenAI reports for an impossible token; JSON has no -inf


Text = Annotated[str, Field(max_length=MAX_TEXT_CHARS)]
Name = Annotated[str, Field(max_length=MAX_QUERY_CHARS)]
Count = Annotated[int, Field(ge=0, le=MAX_INT)]


class OpenBody(Body):
    # OpenAI clients send fields with no effect here (metadata, store, name, refusal, ...):
    # they are ignored rather than refused; every field Refinery reads is still bounded.
    model_config = ConfigDict(extra="allow")


class Message(OpenBody):
    role: Name
    content: Text | list[dict[str, Any]] | None = None
    tool_calls: list | None = None


class CompletionBody(OpenBody):
    model: Name
    messages: list[Message] = Field(min_length=1)
    temperature: float | None = None
    top_p: float | None = None
    max_tokens: Count | None = None
    max_completion_tokens: Count | None = None
    stop: Name | list[Name] | None = None
    stream: bool = False
    stream_options: dict[str, Any] | None = None
    user: Name | None = None
    n: Count | None = None
    tools: list | None = None
    tool_choice: Name | dict | None = None
    functions: list | None = None
    function_call: Name | dict | None = None
    logprobs: bool | None = None
    top_logprobs: Count | None = None
    response_format: dict[str, Any] | None = None
    presence_penalty: float | None = None
    frequency_penalty: float | None = None
    repetition_penalty: float | None = None  # vLLM's extra field; Refinery's own control
    # Refinery's own, through the SDK's extra_body
    use_documents: bool = False
    conversation_id: Name | None = None


class Unsupported(InvalidInput):
    """A parameter Refinery cannot honour; `param` names it in OpenAI's error shape."""

    def __init__(self, param: str, why: str) -> None:
        super().__init__("unsupported parameter", detail=f"{param}: {why}")
        self.param = param


def check_supported(body: CompletionBody) -> None:
    if body.n not in (None, 1):
        raise Unsupported("n", "Refinery returns one answer per request")
    if body.tools or body.functions:
        raise Unsupported("tools", "tool and function calling are not supported")
    if body.tool_choice not in (None, "none", "auto") or body.function_call not in (None, "none"):
        raise Unsupported("tool_choice", "tool and function calling are not supported")
    if body.top_logprobs:
        raise Unsupported(
            "top_logprobs", "only the chosen tokens' log-probabilities are returned "
            "(logprobs: true, top_logprobs 0 or absent)"
        )
    if body.response_format and body.response_format.get("type") not in (None, "text"):
        raise Unsupported("response_format", "only text answers are supported")
    for name in ("presence_penalty", "frequency_penalty"):
        if getattr(body, name):
            raise Unsupported(name, "only 0 is supported")


def text_of(message: Message) -> str:
    if message.tool_calls:
        raise Unsupported("messages", "tool calls are not supported")
    if message.content is None or isinstance(message.content, str):
        return message.content or ""
    parts = []
    for part in message.content:
        if part.get("type") != "text" or not isinstance(part.get("text"), str):
            raise Unsupported("messages", f"content parts of type {part.get('type')!r}: "
                              "only text is supported")  # fmt: skip
        parts.append(part["text"])
    return "".join(parts)


def to_chat_request(body: CompletionBody, services: Services, user: str) -> ChatRequest:
    """OpenAI messages -> a chat turn: system/developer messages form the system prompt, the
    last message (a user's) is the prompt, the ones between are the history."""
    check_supported(body)
    system, turns = [], []
    for message in body.messages:
        if message.role in SYSTEM_ROLES:
            system.append(text_of(message))
        elif message.role in ("user", "assistant"):
            turns.append({"role": message.role, "content": text_of(message)})
        else:
            raise Unsupported("messages", f"role {message.role!r}: use system, user or assistant")
    if not turns or turns[-1]["role"] != "user":
        raise InvalidInput("the last message must be the user's")
    stop = (body.stop,) if isinstance(body.stop, str) else tuple(body.stop or ())
    max_tokens = body.max_tokens if body.max_completion_tokens is None else (
        body.max_completion_tokens
    )
    given = {} if body.repetition_penalty is None else {
        "repetition_penalty": body.repetition_penalty
    }
    return ChatRequest(
        prompt=turns[-1]["content"],
        history=turns[:-1],
        system_prompt="\n\n".join(s for s in system if s) or None,
        options=services.defaults.get().options(
            max_new_tokens=max_tokens, temperature=body.temperature, top_p=body.top_p, **given
        ),
        conversation_id=body.conversation_id,
        user=user,
        model=None if body.model == AUTO else body.model,
        use_documents=body.use_documents,
        stop=stop,
        response_id=uuid.uuid4().hex,
    )


def finish_reason(reason: str) -> str:
    return "length" if reason == "length" else "stop"


def refinery_fields(update: ChatUpdate) -> dict:
    turn = update.turn
    return {
        "refinery_response_id": turn.id,
        "refinery": {
            "response_id": turn.id,
            "conversation_id": turn.conversation_id,
            "model": turn.model_id,
            "adapter_version": turn.adapter_version,
            "route": turn.route,
            "confidence": turn.confidence,  # mean log-probability of the answer's tokens
            "finish_reason": turn.finish_reason,
            "latency_ms": round(turn.latency_ms, 1),
            "tokens_per_s": round(turn.tokens_per_s, 2),
            "notice": update.notice,
        },
    }


def usage(update: ChatUpdate) -> dict:
    turn = update.turn
    return {
        "prompt_tokens": turn.prompt_tokens,
        "completion_tokens": turn.completion_tokens,
        "total_tokens": turn.prompt_tokens + turn.completion_tokens,
    }


def logprobs_json(update: ChatUpdate) -> dict | None:
    """OpenAI's logprobs of the answer's tokens (those of the text shown, when a stop sequence
    cut it); None when the engine gave none."""
    if update.logprobs is None:
        return None
    entries, length, shown = [], 0, len(update.turn.response)
    cut = sum(len(token) for token, _ in update.logprobs) > shown
    for token, value in update.logprobs:
        if cut and length >= shown:
            break
        if math.isnan(value):
            continue
        entries.append({"token": token, "logprob": max(value, LOWEST_LOGPROB),
                        "bytes": list(token.encode()), "top_logprobs": []})  # fmt: skip
        length += len(token)
    return {"content": entries, "refusal": None}


def completion_json(model: str, update: ChatUpdate, with_logprobs: bool = False) -> dict:
    turn = update.turn
    return {
        "id": f"chatcmpl-{turn.id}",
        "object": "chat.completion",
        "created": int(turn.created_at.timestamp()),
        "model": model,
        "choices": [{
            "index": 0,
            "message": {"role": "assistant", "content": turn.response},
            "logprobs": logprobs_json(update) if with_logprobs else None,
            "finish_reason": finish_reason(turn.finish_reason),
        }],
        "usage": usage(update),
        **refinery_fields(update),
    }  # fmt: skip


def model_entry(model_id: str, description: str, **extra) -> dict:
    return {"id": model_id, "object": "model", "created": 0, "owned_by": "refinery",
            "description": description} | extra  # fmt: skip


def build_openai_router(services: Services) -> APIRouter:
    router = APIRouter(prefix="/v1", dependencies=[Depends(api_user(services.auth)),
                                                   Depends(attributed_to_login)])

    @router.get("/models")
    def models() -> dict:
        base = services.models.name
        routes = services.routing.list()
        entries = [
            model_entry(AUTO, "a matching route's adapter, else the promoted adapter, else base",
                        routes=[{"id": r.id, "model": r.model_id, "kind": r.kind}
                                for r in routes]),  # fmt: skip
            model_entry(BASE, f"the base model {base} without an adapter"),
            model_entry(base, "the base model without an adapter"),
        ]
        entries += [
            model_entry(m.id, f"LoRA adapter {m.name!r} on {m.base_model}", name=m.name,
                        created=int(m.created_at.timestamp()))  # fmt: skip
            for m in services.registry.list()
        ]
        return {"object": "list", "data": entries}

    @router.post("/chat/completions")
    def chat_completions(body: CompletionBody, http: Request):  # sync: the route in the pool
        try:
            request = to_chat_request(body, services, request_user(http, body.user))
        except Unsupported as error:
            return JSONResponse(
                status_code=400,
                content=openai_error(400, error.message, error.detail, param=error.param),
            )
        headers = {RESPONSE_ID_HEADER: request.response_id}
        if not body.stream:
            with services.admission.slot():
                update = services.chat.complete(request)
            return JSONResponse(
                completion_json(body.model, update, bool(body.logprobs)), headers=headers
            )
        services.chat.check_model(request.model)
        services.chat.check_limits(request)
        services.admission.check()  # 429 before the stream starts; its place is taken inside
        include_usage = bool((body.stream_options or {}).get("include_usage"))
        events = _chunks(services, request, body.model, include_usage, bool(body.logprobs))
        return StreamingResponse(
            iterate_in_threadpool(events), media_type="text/event-stream", headers=headers
        )

    return router


def _chunks(
    services: Services, request: ChatRequest, model: str, include_usage: bool, logprobs: bool
):
    """The answer as OpenAI chunks: the role, the text deltas, the finish (with the tokens'
    log-probabilities when asked), [usage], [DONE]."""
    created = int(time.time())

    def chunk(choices: list, **extra) -> str:
        payload = {
            "id": f"chatcmpl-{request.response_id}",
            "object": "chat.completion.chunk",
            "created": created,
            "model": model,
            "choices": choices,
            "refinery_response_id": request.response_id,
            **extra,
        }
        return f"data: {json.dumps(payload)}\n\n"

    def choice(delta: dict, reason: str | None = None, values: dict | None = None) -> list:
        return [{"index": 0, "delta": delta, "logprobs": values, "finish_reason": reason}]

    try:
        with services.admission.slot():
            yield chunk(choice({"role": "assistant", "content": ""}))
            sent = ""
            for update in services.chat.stream(request):
                text = update.turn.response if update.turn else update.text
                if text.startswith(sent) and len(text) > len(sent):
                    yield chunk(choice({"content": text[len(sent):]}))
                    sent = text
                if update.turn:
                    reason = finish_reason(update.turn.finish_reason)
                    values = logprobs_json(update) if logprobs else None
                    yield chunk(choice({}, reason, values), **refinery_fields(update))
                    if include_usage:
                        yield chunk([], usage=usage(update))
    except RefineryError as error:  # headers are sent: report in-band, as OpenAI's servers do
        status = next((code for kind, code in STATUS.items() if isinstance(error, kind)), 400)
        yield f"data: {json.dumps(openai_error(status, error.message, error.detail))}\n\n"
    except Exception as error:
        yield f"data: {json.dumps(openai_error(500, 'internal error', type(error).__name__))}\n\n"
    yield "data: [DONE]\n\n"
