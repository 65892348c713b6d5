"""Route each chat prompt to the adapter made for it: rules first, then embedding similarity.

A rule route matches a keyword or regular expression (case-insensitive); rules are tried in
the order they were added and the first match wins. Patterns run on RE2, whose matching time is
linear in the prompt, so no pattern can stall chat (catastrophic backtracking); features RE2
lacks (back-references, look-around) are refused when the rule is created. A similarity route
compares the prompt with the user turns its adapter was trained on (the run folder's
train.jsonl): the score is the larger of the cosine to their centroid (the domain as a whole)
and to the nearest one (a close match in a varied set), and the best score above its route's
threshold wins.
Nothing matching: the served model (promoted adapter or base).
"""

from __future__ import annotations

import threading
import uuid
from collections.abc import Callable
from dataclasses import dataclass
from datetime import datetime
from functools import lru_cache
from pathlib import Path

import numpy as np
import re2

from core.errors import InvalidInput, NotFound, RefineryError
from core.store.routing import RouteRecord, RoutingStore
from core.training.events import RunFolder, read_jsonl

Embed = Callable[[list[str]], np.ndarray]  # texts -> unit-length rows
KINDS = ("rule", "similarity")
MAX_PATTERNS = 50
MAX_PATTERN_CHARS = 200
MAX_TRAINING_PROMPTS = 500  # embedded once per adapter; enough to describe its domain
SERVED = "served"
RE2_MAX_MEM = 8 << 20  # bytes per compiled pattern; a pattern that needs more is refused


def _options() -> re2.Options:
    options = re2.Options()
    options.case_sensitive = False
    options.log_errors = False
    options.max_mem = RE2_MAX_MEM
    return options


@lru_cache(maxsize=1024)
def compile_pattern(pattern: str):
    """The RE2 program of a rule pattern (case-insensitive); InvalidInput when RE2 cannot run it."""
    try:
        return re2.compile(pattern, _options())
    except re2.error as error:
        reason = error.args[0] if error.args else error
        if isinstance(reason, bytes):
            reason = reason.decode("utf-8", "replace")
        raise InvalidInput(
            f"pattern {pattern!r} is not a regular expression the router can run: {reason} "
            "(rules use RE2 syntax: no back-references or look-around)"
        ) from None


@dataclass(frozen=True)
class Route:
    model_id: str | None  # None: the served model
    reason: str  # 'explicit', 'experiment:A', 'rule:/invoice/', 'similarity:0.71', 'served'


@dataclass(frozen=True, kw_only=True)
class RouteSpec:
    model_id: str
    kind: str
    patterns: tuple[str, ...] = ()
    threshold: float = 0.5

    def __post_init__(self) -> None:
        if not self.model_id.strip():
            raise InvalidInput("a route needs the id of a registered adapter")
        if self.kind not in KINDS:
            raise InvalidInput(f"kind must be one of {', '.join(KINDS)}, got {self.kind!r}")
        if self.kind == "rule":
            self._check_patterns()
        elif not 0 < self.threshold < 1:
            raise InvalidInput(f"the similarity threshold must be in (0, 1), got {self.threshold}")

    def _check_patterns(self) -> None:
        patterns = [p for p in self.patterns if p.strip()]
        if not patterns:
            raise InvalidInput("a rule route needs at least one keyword or regular expression")
        if len(patterns) > MAX_PATTERNS:
            raise InvalidInput(f"at most {MAX_PATTERNS} patterns per route")
        for pattern in patterns:
            if len(pattern) > MAX_PATTERN_CHARS:
                raise InvalidInput(f"a pattern may have at most {MAX_PATTERN_CHARS} characters")
            compile_pattern(pattern)


def training_prompts(run_dir: str | None) -> list[str]:
    """The prompts an adapter learned from: user turns (sft), texts, or preference prompts."""
    path = RunFolder(Path(run_dir)).train_path if run_dir else None
    if path is None or not path.is_file():
        return []
    try:
        rows = read_jsonl(path)
    except (OSError, ValueError):  # an unreadable run folder routes nothing rather than break chat
        return []
    prompts = []
    for row in rows:
        if "messages" in row:
            prompts += [m["content"] for m in row["messages"] if m.get("role") == "user"]
        elif "prompt" in row or "text" in row:
            prompts.append(row.get("prompt") or row["text"][:500])
    return prompts[:MAX_TRAINING_PROMPTS]


class Router:
    def __init__(self, store: RoutingStore, registry, embed: Embed) -> None:
        self.store = store
        self.registry = registry  # core.serving.registry.ModelRegistry
        self.embed = embed
        self._lock = threading.Lock()
        self._prompts: dict[str, tuple] = {}  # model id -> (mtime, vectors, unit centroid)

    def list(self) -> list[RouteRecord]:
        return self.store.list()

    def add(self, spec: RouteSpec) -> RouteRecord:
        model = self.registry.get(spec.model_id.strip())  # NotFound for an unknown adapter
        if spec.kind == "similarity" and not self._prompts_of(model.id)[0].size:
            raise InvalidInput(
                f"adapter {model.id!r} has no training prompts to compare with (its run "
                "folder's train.jsonl is missing); use a rule route for it"
            )
        record = RouteRecord(
            id=uuid.uuid4().hex[:12],
            model_id=model.id,
            kind=spec.kind,
            patterns=[p for p in spec.patterns if p.strip()] if spec.kind == "rule" else [],
            threshold=spec.threshold if spec.kind == "similarity" else None,
            created_at=datetime.now(),
        )
        self.store.add(record)
        return record

    def remove(self, route_id: str) -> None:
        if self.store.get(route_id) is None:
            raise NotFound(f"no route with id {route_id!r}")
        self.store.delete(route_id)

    def route(self, prompt: str) -> Route:
        """The adapter for this prompt; routes to adapters deleted since are skipped."""
        routes = [r for r in self.store.list() if self.registry.store.get(r.model_id)]
        for record in routes:
            if record.kind == "rule":
                for pattern in record.patterns:
                    try:
                        program = compile_pattern(pattern)
                    except InvalidInput:  # stored before rules ran on RE2: it never matches
                        continue
                    if program.search(prompt):
                        return Route(record.model_id, f"rule:/{pattern}/")
        similar = [r for r in routes if r.kind == "similarity"]
        best = self._best_similar(prompt, similar) if similar else None
        return best or Route(None, SERVED)

    def preview(self, prompt: str) -> Route:
        """Where a prompt would go, naming the served model instead of None."""
        if not prompt or not prompt.strip():
            raise InvalidInput("the prompt is empty")
        route = self.route(prompt)
        served = self.registry.active()
        return route if route.model_id else Route(served.id if served else "base", route.reason)

    def _best_similar(self, prompt: str, routes: list[RouteRecord]) -> Route | None:
        try:
            query = self.embed([prompt])[0]
            scored = [(self.score(query, r.model_id), r) for r in routes]
        except RefineryError:  # e.g. the embedder is unavailable: chat goes on without it
            return None
        passing = [(score, r) for score, r in scored if score >= r.threshold]
        if not passing:
            return None
        score, record = max(passing, key=lambda pair: pair[0])
        return Route(record.model_id, f"similarity:{score:.2f}")

    def score(self, query: np.ndarray, model_id: str) -> float:
        vectors, middle = self._prompts_of(model_id)
        if not vectors.size:
            return -1.0
        return float(max((vectors @ query).max(), middle @ query))

    def _prompts_of(self, model_id: str) -> tuple[np.ndarray, np.ndarray]:
        """The adapter's training prompts embedded, and their unit centroid; computed once
        (again only if train.jsonl changed)."""
        run_dir = self.registry.get(model_id).lineage.get("run_dir")
        path = RunFolder(Path(run_dir)).train_path if run_dir else None
        stamp = path.stat().st_mtime if path is not None and path.is_file() else -1.0
        with self._lock:
            cached = self._prompts.get(model_id)
            if cached is None or cached[0] != stamp:
                prompts = training_prompts(run_dir)
                vectors = self.embed(prompts) if prompts else np.zeros((0, 0), np.float32)
                mean = vectors.mean(axis=0) if prompts else np.zeros(0, np.float32)
                middle = mean / np.linalg.norm(mean) if prompts else mean
                cached = self._prompts[model_id] = (stamp, vectors, middle)
        return cached[1], cached[2]
