"""The `openai` engine: an OpenAI-compatible server (vLLM, llama.cpp's server, Ollama, TGI or
another Refinery) generates the answers.

The prompt is still fitted to the context here, with the tokenizer of --model (the same model
the server runs, which training and SHAP/LIME keep using locally); the server gets the fitted
messages and streams the answer. Names on the server: the base model is --openai-model
(default: --model's value) and an adapter is its registry id (`adapter-<job>`), the name vLLM
serves it under with `--lora-modules adapter-<job>=<its folder>`. Timing is measured here as for
local engines, confidence is the mean of the log-probabilities the server returns (None when it
returns none), and the repeated-n-gram stop runs here on words. Stop sequences are applied by
the caller (core/serving/chat.py), which ends the stream at one.
"""

from __future__ import annotations

import math
import queue
import re
import threading
import time
from collections.abc import Callable, Iterator
from concurrent.futures import ThreadPoolExecutor
from dataclasses import dataclass, field
from functools import partial
from pathlib import Path

from core.errors import Busy, InvalidInput, ModelUnavailable, RefineryError
from core.serving.generation import GenerationOptions, GenerationResult, PreparedPrompt
from core.serving.repetition import RepetitionGuard

NAME = "openai"
MAX_PARALLEL = 8  # rows of one batch asked at once: the server batches them itself
CONNECT_SECONDS = 5.0
READ_SECONDS = 300.0  # a long answer from a busy server
SPACE = re.compile(r"\s+")


def served_adapter_name(registry, adapter_dir: Path | str) -> str:
    """An adapter's name on the server: its registry id."""
    folder = Path(adapter_dir).resolve()
    for entry in registry.list():
        if Path(entry.adapter_dir).resolve() == folder:
            return entry.id
    raise ModelUnavailable(
        f"the adapter in {folder} is not registered; the openai engine asks the server for "
        "an adapter by its registry id"
    )


def remote_server(settings, registry) -> RemoteServer:
    """The server --engine openai names (core.settings.Settings), adapters by `registry` id."""
    return RemoteServer(
        settings.openai_base_url, settings.openai_api_key,
        settings.openai_model or settings.model, partial(served_adapter_name, registry),
    )


@dataclass
class RemoteServer:
    """One OpenAI-compatible server and how Refinery's models are named on it."""

    base_url: str  # e.g. http://gpu1:8000/v1
    api_key: str | None
    base_model: str  # the base model's name on the server
    adapter_name: Callable[[Path], str]  # an adapter folder -> its name on the server
    # the server refused logprobs, repetition_penalty or stream_options: ask without them
    plain: bool = False
    _client: object = field(default=None, repr=False)
    _lock: threading.Lock = field(default_factory=threading.Lock, repr=False)

    def client(self):
        import openai

        with self._lock:
            if self._client is None:
                self._client = openai.OpenAI(
                    base_url=self.base_url, api_key=self.api_key or "unused", max_retries=0,
                    timeout=openai.Timeout(READ_SECONDS, connect=CONNECT_SECONDS),
                )
            return self._client

    def engine(self, row_adapters: list[Path | str | None]) -> OpenAIEngine:
        return OpenAIEngine(self, [
            self.base_model if adapter is None else self.adapter_name(Path(adapter))
            for adapter in row_adapters
        ])  # fmt: skip

    def open(self, model: str, messages: list[dict], options: GenerationOptions):
        """The streamed completion; a request the server refuses is asked once more without
        the extras some servers do not know."""
        try:
            return self._create(model, messages, options, plain=self.plain)
        except Exception as error:
            import openai

            if self.plain or not isinstance(error, openai.BadRequestError):
                raise self.typed(error, model) from error
        try:
            stream = self._create(model, messages, options, plain=True)
        except Exception as error:
            raise self.typed(error, model) from error
        self.plain = True
        return stream

    def _create(self, model: str, messages: list[dict], options: GenerationOptions, *, plain):
        sampling = options.sampling
        extras: dict = {}
        if not plain:
            extras = dict(logprobs=True, stream_options={"include_usage": True})
            if options.repetition_penalty != 1.0:  # vLLM's and Refinery's name for it
                extras["extra_body"] = {"repetition_penalty": options.repetition_penalty}
        return self.client().chat.completions.create(
            model=model, messages=messages, stream=True, max_tokens=options.max_new_tokens,
            temperature=options.temperature if sampling else 0.0,
            top_p=options.top_p if sampling else 1.0, **extras,
        )

    def typed(self, error: Exception, model: str) -> RefineryError:
        """The server's failure as an error a person can act on."""
        import openai

        if isinstance(error, RefineryError):
            return error
        where = f"the OpenAI-compatible server at {self.base_url}"
        said = _message(error)
        if isinstance(error, openai.APIConnectionError):
            return ModelUnavailable(
                f"cannot reach {where}: check --openai-base-url and that the server runs",
                detail=str(error.__cause__ or error),
            )
        if isinstance(error, openai.NotFoundError):
            return ModelUnavailable(
                f"{where} does not serve the model {model!r} (vLLM: --served-model-name for the "
                "base model, --lora-modules NAME=FOLDER for an adapter)", detail=said,
            )
        if isinstance(error, (openai.AuthenticationError, openai.PermissionDeniedError)):
            return ModelUnavailable(f"{where} refused the API key (--openai-api-key)", detail=said)
        if isinstance(error, openai.RateLimitError):
            return Busy(f"{where} is busy; try again shortly", detail=said)
        if isinstance(error, (openai.BadRequestError, openai.UnprocessableEntityError)):
            return InvalidInput(f"{where} refused the request: {said}")
        if isinstance(error, openai.APIStatusError):
            return ModelUnavailable(
                f"{where} failed (HTTP {error.status_code})", detail=said
            )
        if isinstance(error, openai.OpenAIError):
            return ModelUnavailable(f"{where} failed while answering: {said}")
        return ModelUnavailable(f"{where} sent an answer Refinery cannot read",
                                detail=type(error).__name__)


def _message(error: Exception) -> str:
    body = getattr(error, "body", None)
    if isinstance(body, dict):
        inner = body.get("error", body)
        message = inner.get("message") if isinstance(inner, dict) else None
        detail = inner.get("detail") if isinstance(inner, dict) else None
        if message:
            return f"{message}: {detail}" if detail else str(message)
    return getattr(error, "message", None) or str(error)


class OpenAIEngine:
    """One hold of the model: the server's name for each row's model (base or adapter)."""

    name = NAME

    def __init__(self, server: RemoteServer, models: list[str]) -> None:
        self.server = server
        self.models = models

    def generate(self, loaded, prompts, options, stop_event) -> RemoteRows:
        # One model held (ModelService.use): every row is answered by it.
        models = self.models if len(self.models) == len(prompts) else self.models * len(prompts)
        return RemoteRows(self.server, models, prompts, options, stop_event)


@dataclass
class RemoteRows:
    """Iterate for (row, text delta); `results` holds one GenerationResult per row afterwards.

    Rows are asked side by side (at most MAX_PARALLEL at once). A reader that goes away, or
    `stop_event`, closes the streams; the first error ends every row and re-raises here."""

    server: RemoteServer
    models: list[str]
    prompts: list[PreparedPrompt]
    options: GenerationOptions
    stop_event: threading.Event = field(default_factory=threading.Event)
    results: list[GenerationResult] = field(default_factory=list)

    def __iter__(self) -> Iterator[tuple[int, str]]:
        count = len(self.prompts)
        if not count:
            return
        events: queue.Queue = queue.Queue()
        halt = threading.Event()
        results: list[GenerationResult | None] = [None] * count

        def stopped() -> bool:
            return halt.is_set() or self.stop_event.is_set()

        def work(index: int) -> None:
            try:
                if not halt.is_set():
                    results[index] = self._answer(
                        self.models[index], self.prompts[index], stopped,
                        lambda delta: events.put((index, delta)),
                    )
            except BaseException as error:  # re-raised in the reader's thread
                events.put((index, error))
            finally:
                events.put((index, None))

        failure = None
        with ThreadPoolExecutor(min(count, MAX_PARALLEL)) as pool:
            try:
                for index in range(count):
                    pool.submit(work, index)
                finished = 0
                while finished < count:
                    index, item = events.get()
                    if item is None:
                        finished += 1
                    elif isinstance(item, BaseException):
                        failure = failure or item
                        halt.set()
                    elif failure is None:
                        yield index, item
            finally:
                halt.set()  # the reader went away, or all is done: no stream stays open
        if failure is not None:
            raise failure
        self.results = results

    def _answer(self, model: str, prompt: PreparedPrompt, stopped, emit) -> GenerationResult:
        options = self.options
        guard = RepetitionGuard(options.repeat_ngram_size, options.repeat_ngram_limit)
        started = time.perf_counter()
        stream = self.server.open(model, prompt.messages, options)
        text, word, pieces = "", "", 0
        first_at = done_at = usage = reason = None
        tokens: list[tuple[str, float]] = []
        repeated = False
        try:
            with stream:  # closing it ends the request, and generation on most servers
                for chunk in stream:
                    usage = chunk.usage or usage
                    for choice in chunk.choices:
                        content = choice.logprobs.content if choice.logprobs else None
                        tokens += [(entry.token, entry.logprob) for entry in content or ()]
                        reason = choice.finish_reason or reason
                        delta = choice.delta.content if choice.delta else None
                        if not delta:
                            continue
                        done_at = time.perf_counter()
                        first_at = first_at or done_at
                        text, pieces = text + delta, pieces + 1
                        emit(delta)
                        *words, word = SPACE.split(word + delta)
                        repeated = repeated or any(guard.feed(w) for w in words if w)
                    if repeated or stopped():
                        break
        except RefineryError:
            raise
        except Exception as error:
            raise self.server.typed(error, model) from error
        if repeated:
            reason = "repetition"
        elif reason is None:
            reason = "cancelled" if stopped() else "stop"
        elif reason != "length":
            reason = "stop"
        completion = usage.completion_tokens if usage else len(tokens) or pieces
        seconds = max((done_at or time.perf_counter()) - started, 1e-9)
        values = [value for _, value in tokens]
        confidence = sum(values) / len(values) if values else None
        return GenerationResult(
            text=text,
            prompt_tokens=usage.prompt_tokens if usage else len(prompt.input_ids),
            completion_tokens=completion,
            latency_ms=seconds * 1000,
            ttft_ms=(first_at - started) * 1000 if first_at else None,
            tokens_per_s=completion / seconds,
            confidence=confidence if confidence is not None and math.isfinite(confidence)
            else None,
            finish_reason=reason,
            engine=NAME,
            token_logprobs=tokens or None,
        )
