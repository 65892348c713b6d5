"""Model specs for comparison: 'base', 'base+fewshot', a registered adapter id or folder."""

from __future__ import annotations

import re
import threading
from collections.abc import Callable, Iterator
from dataclasses import dataclass, field
from pathlib import Path

import numpy as np

from core.documents.grounding import ground
from core.errors import InvalidInput, NotFound
from core.paths import AllowedFolders, looks_like_path
from core.serving.adapter_files import adapter_fingerprint
from core.serving.engines.run import GenerationStream, engine_of
from core.serving.generation import (
    GenerationOptions,
    GenerationResult,
    PreparedPrompt,
    fit_to_context,
    prepare_prompt,
    prompt_budget,
)
from core.serving.models import ModelService
from core.store.arena import ArenaStore

BASE = "base"
FEWSHOT = "base+fewshot"
WORD = re.compile(r"\w+")

Embed = Callable[[list[str]], np.ndarray]  # texts -> unit-length rows


@dataclass(frozen=True)
class ResolvedModel:
    spec: str  # the name the person chose; what votes and experiments store
    model_id: str  # the base model
    adapter_dir: Path | None
    adapter_version: str | None
    fewshot: bool = False

    @property
    def version(self) -> str:
        """The exact weights (and prompting) behind this spec, stored with every vote."""
        if self.adapter_version:
            return f"{self.model_id}+{self.adapter_version}"
        return f"{self.model_id}+fewshot" if self.fewshot else self.model_id

    @property
    def weights_version(self) -> str:
        """The version plus a hash of the adapter's weights: a retrained adapter gets a new one."""
        if self.adapter_dir is None:
            return self.version
        return f"{self.version}+{adapter_fingerprint(self.adapter_dir)}"


def token_overlap(a: str, b: str) -> float:
    """Jaccard similarity of the two texts' lower-cased word sets."""
    left, right = set(WORD.findall(a.lower())), set(WORD.findall(b.lower()))
    return len(left & right) / len(left | right) if left | right else 0.0


class ModelResolver:
    """Turns spec strings into adapter folders, and builds few-shot prompts from feedback."""

    def __init__(
        self,
        models: ModelService,
        store: ArenaStore,
        *,
        registry=None,
        embed: Embed | None = None,
        fewshot_k: int = 3,
        folders: AllowedFolders | None = None,  # where adapter folders named by path may live
    ) -> None:
        self.models = models
        self.folders = folders
        self.store = store
        self.registry = registry
        self.embed = embed
        self.fewshot_k = fewshot_k

    def resolve(self, spec: str) -> ResolvedModel:
        spec = (spec or "").strip()
        if not spec:
            raise InvalidInput("the model is empty: use 'base', 'base+fewshot' or an adapter id")
        if spec in (BASE, self.models.name):
            return ResolvedModel(BASE, self.models.name, None, None)
        if spec == FEWSHOT:
            return ResolvedModel(FEWSHOT, self.models.name, None, None, fewshot=True)
        if self.folders is not None and looks_like_path(spec):
            folder = self.folders.folder(spec)
            if not (folder / "adapter_config.json").is_file():
                raise InvalidInput(f"{spec!r} is not a LoRA adapter folder")
            return ResolvedModel(spec, self.models.name, folder, folder.name)
        folder = Path(spec).expanduser()
        if self.folders is None and (folder / "adapter_config.json").is_file():
            return ResolvedModel(spec, self.models.name, folder.resolve(), folder.name)
        return self._from_registry(spec)

    def _from_registry(self, spec: str) -> ResolvedModel:
        if self.registry is None:
            raise NotFound(
                f"unknown model {spec!r}: use 'base', 'base+fewshot' or an adapter folder"
            )
        entry = self.registry.get(spec)  # raises NotFound for an unknown id
        return ResolvedModel(
            spec, self.models.name, Path(entry.adapter_dir), str(getattr(entry, "version", spec))
        )

    def choices(self) -> list[str]:
        """What the UI offers: base, base+fewshot and every registered adapter."""
        names = [BASE, FEWSHOT]
        if self.registry is not None:
            names += [entry.id for entry in self.registry.list()]
        return names

    def fewshot_messages(self, prompt: str) -> tuple[list[dict], list[str]]:
        """The k best-rated examples most similar to the prompt, as chat turns, and their ids."""
        candidates = self.store.well_rated_examples()
        if not candidates:
            return [], []
        scores = self._similarities(prompt, [c["prompt"] for c in candidates])
        ranked = sorted(
            zip(scores, candidates, strict=True), key=lambda p: (-p[0], -float(p[1]["stars"]))
        )
        chosen = [c for _, c in ranked[: self.fewshot_k]]
        messages = []
        for example in reversed(chosen):  # the most similar sits closest to the question
            messages += [
                {"role": "user", "content": example["prompt"]},
                {"role": "assistant", "content": example["answer"]},
            ]
        return messages, [c["id"] for c in chosen]

    def with_fewshot(self, messages: list[dict]) -> tuple[list[dict], list[str]]:
        """The conversation with the examples put after the system prompt, and their ids."""
        examples, ids = self.fewshot_messages(messages[-1]["content"])
        system = [m for m in messages[:1] if m["role"] == "system"]
        return [*system, *examples, *messages[len(system) :]], ids

    def _similarities(self, prompt: str, texts: list[str]) -> list[float]:
        if self.embed is None:
            return [token_overlap(prompt, text) for text in texts]
        vectors = self.embed([prompt, *texts])
        return (vectors[1:] @ vectors[0]).tolist()


@dataclass
class AnswerStream:
    """One answer from one spec: iterate for text deltas; then `prompt` and `result` are set.

    The model is held (with exactly this spec's adapter) only while the answer is generated,
    so two specs never mix even when requests interleave.
    """

    resolver: ModelResolver
    resolved: ResolvedModel
    messages: list[dict]
    options: GenerationOptions
    stop_event: threading.Event = field(default_factory=threading.Event)
    prompt: PreparedPrompt | None = None
    result: GenerationResult | None = None
    fewshot_ids: list[str] = field(default_factory=list)

    def __iter__(self) -> Iterator[str]:
        messages = self.messages
        if self.resolved.fewshot:
            messages, self.fewshot_ids = self.resolver.with_fewshot(messages)
        with self.resolver.models.use(self.resolved.adapter_dir) as loaded:
            self.prompt = prepare_prompt(loaded, messages, self.options)
            stream = GenerationStream(loaded, self.prompt, self.options, self.stop_event)
            yield from stream
        self.result = stream.result


@dataclass
class AnswerPair:
    """Two specs' answers to one conversation, generated together: the model is held once,
    each row with its own spec's adapter (or none). On transformers the rows share one batch
    (core/serving/adapter_rows.py); on the fast engine each side's converted copy steps
    alongside."""

    resolver: ModelResolver
    sides: tuple[ResolvedModel, ResolvedModel]
    messages: list[dict]
    options: GenerationOptions
    stop_event: threading.Event = field(default_factory=threading.Event)
    prompts: list[PreparedPrompt] = field(default_factory=list)
    results: list[GenerationResult] = field(default_factory=list)
    fewshot_ids: list[list[str]] = field(default_factory=list)
    hits: list = field(default_factory=list)  # retrieved chunks to ground both answers on
    sources: tuple = ()  # the ones that fit: the same for both sides

    def __iter__(self) -> Iterator[tuple[int, str]]:
        conversations = []
        for side in self.sides:
            messages, ids = (
                self.resolver.with_fewshot(self.messages) if side.fewshot else (self.messages, [])
            )
            conversations.append(messages)
            self.fewshot_ids.append(ids)
        with self.resolver.models.use_rows([s.adapter_dir for s in self.sides]) as loaded:
            budget = prompt_budget(loaded, self.options)
            grounded = []
            for messages in conversations:
                messages, self.sources = ground(loaded.tokenizer, messages, self.hits, budget)
                grounded.append(messages)
            self.prompts = [fit_to_context(loaded.tokenizer, m, budget) for m in grounded]
            stream = engine_of(loaded).generate(loaded, self.prompts, self.options,
                                                self.stop_event)
            yield from stream
        self.results = stream.results
