"""Knowledge and general-ability runs: one model answers every item, greedy and short.

Runs wait in a queue and one background thread works through it (they share the one
model anyway); each is a stored row with its progress, so a run cut off by a restart
shows as failed. Grounded runs use Chat's "Ground on documents" (core.documents.grounding).
"""

from __future__ import annotations

import queue
import threading
import uuid
from datetime import datetime

from core.documents.grounding import SOURCES_K, ground, retrieve
from core.errors import Conflict, InvalidInput, NotFound, RefineryError
from core.jobs import (
    ACTIVE,
    KNOWLEDGE,
    Cancelled,
    Failed,
    JobBoard,
    Progressed,
    Queued,
    Started,
    Succeeded,
)
from core.knowledge.check import KnowledgeService
from core.knowledge.general import load_general_set
from core.knowledge.scoring import score_answer
from core.serving.engines.run import generate_batch
from core.serving.generation import GenerationOptions, fit_to_context, prompt_budget
from core.store.jobs import JobStore
from core.store.knowledge import KnowledgeStore

BASE = "base"
FINISHED = ("done", "failed", "cancelled")
BATCH = 8  # questions per generate() call
MAX_NEW_TOKENS = 48


def _summary(rows: list[dict]) -> dict:
    correct = sum(row["match"] for row in rows)
    return {
        "items": len(rows),
        "correct": correct,
        "fact_match": correct / len(rows) if rows else None,
        "token_f1": sum(row["f1"] for row in rows) / len(rows) if rows else None,
    }


class KnowledgeRuns:
    def __init__(
        self,
        store: KnowledgeStore,
        checks: KnowledgeService,
        *,
        models,  # core.serving.models.ModelService
        registry,  # core.serving.registry.ModelRegistry: adapters by id
        documents=None,  # core.documents.service.DocumentService: grounded runs
        max_new_tokens: int = MAX_NEW_TOKENS,
        jobs: JobBoard | None = None,  # where each run's lifecycle is reported
    ) -> None:
        self.store = store
        self.jobs = jobs or JobBoard(JobStore(store.db))
        self.checks = checks
        self.models = models
        self.registry = registry
        self.documents = documents
        self.options = GenerationOptions(max_new_tokens=max_new_tokens, temperature=0.0)
        self._queue: queue.Queue[str | None] = queue.Queue()
        self._idle = threading.Condition()
        self._pending = 0
        self._thread: threading.Thread | None = None
        self._cancelled: set[str] = set()  # runs to stop before their next batch
        self.store.interrupted()

    # starting

    def _adapter_dir(self, model: str) -> str | None:
        if model in (BASE, self.models.name):
            return None
        return self.registry.get(model).adapter_dir  # NotFound for an unknown id

    def _model_id(self, model: str | None) -> str:
        model = (model or BASE).strip()
        self._adapter_dir(model)
        return BASE if model == self.models.name else model

    def start(
        self,
        check_id: str,
        *,
        model: str | None = None,
        grounded: tuple[bool, ...] = (False, True),
        general: bool = False,
        trigger: str = "manual",
    ) -> list[str]:
        """Queue a run per grounding choice (and a general run when asked); their ids."""
        check = self.checks.get(check_id)
        if check["status"] != "ready" or not check["item_count"]:
            raise InvalidInput(f"{check_id} has no items to run yet")
        if not grounded:
            raise InvalidInput("choose grounded, ungrounded or both")
        if True in grounded and self.documents is None:
            raise InvalidInput("document grounding is not available in this studio")
        model_id = self._model_id(model)
        ids = [self._queue_run("knowledge", model_id, g, check_id, check["item_count"], trigger)
               for g in dict.fromkeys(grounded)]
        if general:
            ids.append(self.start_general(model=model_id, trigger=trigger))
        return ids

    def start_general(self, *, model: str | None = None, trigger: str = "manual") -> str:
        model_id = self._model_id(model)
        return self._queue_run("general", model_id, False, None, len(load_general_set()), trigger)

    def _queue_run(self, kind, model, grounded, check_id, total, trigger) -> str:
        run_id = uuid.uuid4().hex
        self.store.add_run({
            "id": run_id, "kind": kind, "check_id": check_id, "model": model,
            "grounded": grounded, "status": "queued", "total": total,
            "created_at": datetime.now(), "trigger": trigger,
        })
        grounding = " grounded" if grounded else ""
        self.jobs.emit(Queued(run_id, KNOWLEDGE, f"{kind}{grounding} check of {model}",
                              detail={"run_kind": kind, "check_id": check_id, "model": model,
                                      "grounded": grounded, "trigger": trigger}))
        with self._idle:
            self._pending += 1
        self._queue.put(run_id)
        self._ensure_thread()
        return run_id

    def _ensure_thread(self) -> None:
        if self._thread is None or not self._thread.is_alive():
            self._thread = threading.Thread(target=self._work, daemon=True)
            self._thread.start()

    def close(self) -> None:
        self._queue.put(None)

    def wait_idle(self, timeout: float | None = None) -> bool:
        """Block until every queued run has finished (tests, CLI); False on timeout."""
        with self._idle:
            return self._idle.wait_for(lambda: self._pending == 0, timeout)

    def cancel(self, run_id: str) -> dict:
        """A queued run never starts; a running one stops after its current batch and keeps
        the answers it has."""
        run = self.get(run_id)
        if run["status"] not in ACTIVE:
            raise Conflict(f"knowledge run {run_id} is {run['status']}; only a queued or running "
                           "run can be cancelled")
        self._cancelled.add(run_id)
        return run

    # reading

    def get(self, run_id: str) -> dict:
        run = self.store.run(run_id)
        if run is None:
            raise NotFound(f"no knowledge run with id {run_id!r}")
        return run

    def list(self, check_id: str | None = None, *, kind: str | None = None) -> list[dict]:
        if check_id is not None:
            self.checks.get(check_id)
        return self.store.runs(check_id=check_id, kind=kind)

    # after training

    def after_training(self, job, model) -> None:
        """A finished training run's adapter gets both scores; the base too when it has none.
        Nothing happens before a knowledge check exists."""
        if getattr(job, "kind", None) == "embedding":
            return
        check = self.checks.latest_ready()
        if check is None:
            return
        trigger = f"training:{job.id}"
        self.start(check["id"], model=model.id, general=True, trigger=trigger)
        if not _base_scored(self.store.runs(check_id=check["id"])):
            self.start(check["id"], model=BASE, trigger=trigger)
        if not _base_scored(self.store.runs(kind="general")):
            self.start_general(model=BASE, trigger=trigger)

    # running

    def _work(self) -> None:
        while (run_id := self._queue.get()) is not None:
            try:
                self._execute(run_id)
            finally:
                with self._idle:
                    self._pending -= 1
                    self._idle.notify_all()

    def _stop_if_cancelled(self, run_id: str, scored: list[dict]) -> bool:
        if run_id not in self._cancelled:
            return False
        self._cancelled.discard(run_id)
        self.store.update_run(run_id, status="cancelled", finished_at=datetime.now(),
                              summary=_summary(scored), items=scored)
        self.jobs.emit(Cancelled(run_id, f"cancelled after {len(scored)} answers"))
        return True

    def _execute(self, run_id: str) -> None:
        run = self.get(run_id)
        if self._stop_if_cancelled(run_id, []):
            return
        self.store.update_run(run_id, status="running")
        self.jobs.emit(Started(run_id))
        try:
            if run["kind"] == "general":
                items = [{"id": str(n), "question": g.question, "reference": g.answer, "general": g}
                         for n, g in enumerate(load_general_set())]
            else:
                items = self.store.items(run["check_id"])
            adapter = self._adapter_dir(run["model"])
            scored: list[dict] = []
            for start in range(0, len(items), BATCH):
                if self._stop_if_cancelled(run_id, scored):
                    return
                batch = items[start : start + BATCH]
                scored += self._answer(batch, adapter, run["grounded"])
                self.store.update_run(run_id, done=len(scored))
                self.jobs.emit(Progressed(run_id, progress=len(scored) / len(items),
                                          message=f"answered {len(scored)} of {len(items)}"))
            summary = _summary(scored)
            self.store.update_run(
                run_id, status="done", finished_at=datetime.now(), summary=summary, items=scored,
            )
            self.jobs.emit(Succeeded(run_id, f"{summary['correct']}/{summary['items']} correct",
                                     result={"summary": summary}))
        except Exception as error:  # a background run always ends in a stored state
            message = error.message if isinstance(error, RefineryError) else str(error)
            self.store.update_run(
                run_id, status="failed", finished_at=datetime.now(), error=message
            )
            self.jobs.emit(Failed(run_id, message))

    def _answer(self, batch: list[dict], adapter, grounded: bool) -> list[dict]:
        hits = [retrieve(self.documents, item["question"], SOURCES_K) if grounded else []
                for item in batch]
        with self.models.use(adapter) as loaded:
            budget = prompt_budget(loaded, self.options)
            prompts, sources = [], []
            for item, found in zip(batch, hits, strict=True):
                messages = [{"role": "user", "content": item["question"]}]
                messages, kept = ground(loaded.tokenizer, messages, found, budget)
                prompts.append(fit_to_context(loaded.tokenizer, messages, budget))
                sources.append([hit.chunk_id for hit in kept])
            results = generate_batch(loaded, prompts, self.options)
        answers = [result.text.strip() for result in results]
        rows = []
        for item, answer, used in zip(batch, answers, sources, strict=True):
            score = score_answer(answer, item["reference"])
            match = item["general"].matches(answer) if "general" in item else score.match
            rows.append({
                "id": item["id"], "question": item["question"], "reference": item["reference"],
                "answer": answer, "match": match, "f1": score.f1, "sources": used,
            })
        return rows


def _fraction(run: dict | None) -> str:
    return f"{run['summary']['correct']}/{run['summary']['items']}" if run else "?"


class Scores:
    """The latest finished scores of a model: "knows X/N of your facts (grounded Y/N),
    general Z/M" (on the newest knowledge check)."""

    def __init__(self, runs: KnowledgeRuns) -> None:
        self.runs = runs

    def of(self, model: str) -> dict:
        model = BASE if model in (BASE, self.runs.models.name) else model
        check = self.runs.checks.latest_ready()
        done = [r for r in self.runs.store.runs() if r["status"] == "done" and r["model"] == model]

        def latest(kind: str, grounded: bool) -> dict | None:
            return next((r for r in done if r["kind"] == kind and r["grounded"] == grounded
                         and (kind == "general" or r["check_id"] == (check or {}).get("id"))),
                        None)

        known, grounded = latest("knowledge", False), latest("knowledge", True)
        general = latest("general", False)
        return {
            "model": model,
            "check_id": check["id"] if check else None,
            "known": known and known["summary"],
            "grounded": grounded and grounded["summary"],
            "general": general and general["summary"],
            "line": self._line(check, known, grounded, general),
        }

    @staticmethod
    def _line(check, known, grounded, general) -> str:
        parts = []
        if check is None:
            parts.append("no knowledge check yet")
        elif known or grounded:
            parts.append(f"knows {_fraction(known)} of your facts (grounded {_fraction(grounded)})")
        else:
            parts.append("knowledge check not run")
        parts.append(f"general {_fraction(general)}" if general else "general not run")
        return ", ".join(parts)

    def table(self) -> list[dict]:
        """Base and every registered adapter, newest adapter first."""
        models = [BASE, *(m.id for m in self.runs.registry.list())]
        return [self.of(model) for model in models]


def _base_scored(runs: list[dict]) -> bool:
    """Whether the base model has a score among `runs`, or one on the way."""
    return any(r["model"] == BASE and r["status"] in (*ACTIVE, "done") for r in runs)
