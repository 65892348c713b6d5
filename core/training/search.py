"""Hyperparameter search: grid or Bayesian (optuna TPE) over lr, rank, epochs and dropout.

Each trial is an ordinary training job (queued like any other), so it shows in
the Train tab, can be stopped, and registers its adapter; the search records
each trial's validation loss and names the best one.
"""

from __future__ import annotations

import itertools
import math
import threading
import time
import uuid
from dataclasses import dataclass, field, replace
from datetime import datetime

from core.errors import InvalidInput, NotFound
from core.jobs import (
    CANCELLED,
    FAILED,
    QUEUED,
    RUNNING,
    SEARCH,
    SUCCEEDED,
    Cancelled,
    Failed,
    Job,
    JobBoard,
    Progressed,
    Queued,
    Started,
    Succeeded,
)
from core.operations.auth import ANONYMOUS
from core.training.spec import TrainingSpec

SEARCHABLE = {"learning_rate": float, "lora_rank": int, "epochs": float, "lora_dropout": float}
METHODS = ("grid", "bayesian")
MAX_TRIALS = 100


@dataclass(frozen=True, kw_only=True)
class SearchSpec:
    """`space` maps a parameter to candidate values (grid) or to [low, high] (bayesian)."""

    method: str = "bayesian"
    space: dict = field(default_factory=dict)
    trials: int = 8
    seed: int = 0

    def __post_init__(self) -> None:
        if self.method not in METHODS:
            raise InvalidInput(f"method must be one of {', '.join(METHODS)}")
        if not 1 <= self.trials <= MAX_TRIALS:
            raise InvalidInput(f"trials must be 1-{MAX_TRIALS}")
        if not self.space:
            raise InvalidInput("the search space is empty")
        for name, values in self.space.items():
            if name not in SEARCHABLE:
                raise InvalidInput(f"cannot search {name!r}; choose from {', '.join(SEARCHABLE)}")
            if not isinstance(values, list | tuple) or not values:
                raise InvalidInput(f"{name}: give a list of values")
            if self.method == "bayesian" and (len(values) != 2 or values[0] >= values[1]):
                raise InvalidInput(f"{name}: a bayesian search needs [low, high] with low < high")

    def grid(self) -> list[dict]:
        names = list(self.space)
        combos = itertools.product(*(self.space[n] for n in names))
        return [dict(zip(names, combo, strict=True)) for combo in combos][: self.trials]


def suggest(trial, name: str, bounds) -> float | int:
    low, high = bounds
    if SEARCHABLE[name] is int:
        return trial.suggest_int(name, int(low), int(high), log=high / max(low, 1) >= 4)
    return trial.suggest_float(name, float(low), float(high),
                               log=name == "learning_rate" and low > 0)


class Closing(Exception):
    """The app closed while a trial ran: the search stops without a verdict."""


STATUS = {QUEUED: "running", RUNNING: "running", SUCCEEDED: "completed", CANCELLED: "stopped",
          FAILED: "failed"}  # the job's status in this route's words


@dataclass
class Search:
    id: str
    spec: SearchSpec
    base: TrainingSpec
    created_at: datetime
    status: str = "running"
    trials: list[dict] = field(default_factory=list)  # {job_id, params, status, val_loss}
    error: str | None = None
    interrupted: bool = False  # the app stopped while it ran; its finished trials are kept
    user: str = ANONYMOUS  # who started it; every trial's job is recorded under this name

    @property
    def best(self) -> dict | None:
        done = [t for t in self.trials if t.get("val_loss") is not None]
        return min(done, key=lambda t: t["val_loss"], default=None)

    def to_dict(self) -> dict:
        return {"id": self.id, "method": self.spec.method, "space": self.spec.space,
                "budget": self.spec.trials, "status": self.status, "trials": self.trials,
                "best": self.best, "error": self.error, "interrupted": self.interrupted,
                "user": self.user,
                "created_at": self.created_at.isoformat()}

    def detail(self) -> dict:
        return {"method": self.spec.method, "space": self.spec.space, "budget": self.spec.trials,
                "seed": self.spec.seed, "base": self.base.to_dict()}

    def result(self) -> dict:
        return {"trials": self.trials, "best": self.best}


class SearchService:
    """Runs searches in background threads, one trial at a time through the job runner.

    Each search is a job on the studio's job board: its trials are stored as they go, so a
    search is listed after a restart (one cut off by the restart shows as interrupted)."""

    def __init__(self, runner, *, poll_interval: float = 1.0, jobs: JobBoard | None = None) -> None:
        self.runner = runner
        self.jobs = jobs or runner.jobs
        self.poll_interval = poll_interval
        self._searches: dict[str, Search] = {}  # the ones this process runs
        self._stop: dict[str, threading.Event] = {}
        self._closed = threading.Event()

    def start(self, base: TrainingSpec, spec: SearchSpec, *, train=None, validation=None,
              kind: str | None = None, user: str = ANONYMOUS) -> Search:
        self.runner.resolve_data(base, train, validation, kind)  # bad data fails here, at once
        search = Search(uuid.uuid4().hex[:10], spec, base, datetime.now(), user=user)
        job = self.jobs.emit(Queued(search.id, SEARCH,
                                    f"{spec.method} search, {spec.trials} trials", user,
                                    detail=search.detail()))
        search.created_at = job.created_at  # the stored time, so a restart shows the same
        self.jobs.emit(Started(search.id))
        self._searches[search.id] = search
        self._stop[search.id] = threading.Event()
        data = {"train": train, "validation": validation, "kind": kind}
        threading.Thread(target=self._run, args=(search, data), daemon=True,
                         name=f"search-{search.id}").start()
        return search

    def get(self, search_id: str) -> Search:
        if search_id in self._searches:
            return self._searches[search_id]
        job = self.jobs.find(search_id)
        if job is None or job.kind != SEARCH:
            raise NotFound(f"no hyperparameter search {search_id!r}")
        return self._restored(job)

    def list(self) -> list[Search]:
        stored = [self._restored(job) for job in self.jobs.list(kinds=(SEARCH,))
                  if job.id not in self._searches]
        return sorted([*self._searches.values(), *stored], key=lambda s: s.created_at,
                      reverse=True)

    def _restored(self, job: Job) -> Search:
        """A search of an earlier process, from its job; trials still training are looked up."""
        detail = job.detail
        spec = SearchSpec(method=detail["method"], space=detail["space"],
                          trials=detail["budget"], seed=detail["seed"])
        trials = [dict(trial) for trial in job.result.get("trials", [])]
        for trial in trials:
            if trial["status"] in ("queued", "running", "stopping"):
                record = self.runner.store.get(trial["job_id"])
                if record is not None:
                    self._settled(trial, record)
        return Search(job.id, spec, TrainingSpec.from_dict(detail["base"]), job.created_at,
                      status=STATUS[job.status], trials=trials, error=job.error,
                      interrupted=job.interrupted, user=job.user_id)

    def close(self) -> None:
        """The app is stopping: searches end here, and the next start shows them interrupted
        (their running trial is a worker process of its own and finishes on its own)."""
        self._closed.set()
        for stop in self._stop.values():
            stop.set()

    def stop(self, search_id: str) -> Search:
        search = self.get(search_id)
        if search_id in self._stop:
            self._stop[search_id].set()
        for trial in search.trials:
            if trial["status"] in ("queued", "running"):
                self.runner.stop(trial["job_id"])
        return search

    def _save(self, search: Search) -> None:
        done = sum(t["status"] in ("completed", "stopped", "failed") for t in search.trials)
        self.jobs.emit(Progressed(search.id, progress=done / search.spec.trials,
                                  message=f"trial {len(search.trials)} of {search.spec.trials}",
                                  result=search.result()))

    @staticmethod
    def _settled(trial: dict, record) -> None:
        trial["status"] = record.status
        if record.status in ("completed", "stopped", "failed"):
            trial["model_id"] = record.model_id
            value = record.metrics.get("val_loss") if record.status == "completed" else None
            trial["val_loss"] = value if value is not None and math.isfinite(value) else None

    def _trial(self, search: Search, params: dict, data: dict) -> float | None:
        spec = replace(search.base, name=f"search {search.id} #{len(search.trials) + 1}", **{
            name: SEARCHABLE[name](value) for name, value in params.items()})
        job = self.runner.submit(spec, **data, name=spec.name, user=search.user)
        trial = {"job_id": job.id, "params": params, "status": job.status, "val_loss": None}
        search.trials.append(trial)
        self._save(search)
        while (record := self.runner.get(job.id)).status not in ("completed", "stopped",
                                                                 "failed"):
            if self._closed.is_set():
                raise Closing
            if record.status != trial["status"]:
                trial["status"] = record.status
                self._save(search)
            time.sleep(self.poll_interval)
        self._settled(trial, record)
        self._save(search)
        return trial["val_loss"]

    def _run(self, search: Search, data: dict) -> None:
        stop = self._stop[search.id]
        try:
            if search.spec.method == "grid":
                for params in search.spec.grid():
                    if stop.is_set():
                        break
                    self._trial(search, params, data)
            else:
                import optuna

                optuna.logging.set_verbosity(optuna.logging.WARNING)
                study = optuna.create_study(
                    direction="minimize", sampler=optuna.samplers.TPESampler(seed=search.spec.seed)
                )
                for _ in range(search.spec.trials):
                    if stop.is_set():
                        break
                    trial = study.ask()
                    params = {n: suggest(trial, n, b) for n, b in search.spec.space.items()}
                    value = self._trial(search, params, data)
                    if value is None:
                        study.tell(trial, state=optuna.trial.TrialState.FAIL)
                    else:
                        study.tell(trial, value)
            if self._closed.is_set():
                return
            if stop.is_set():
                self.jobs.emit(Cancelled(search.id, "stopped", result=search.result()))
            else:
                best = search.best
                self.jobs.emit(Succeeded(search.id, f"best trial: {best['job_id']}" if best
                                         else "no trial finished", result=search.result()))
            search.status = "stopped" if stop.is_set() else "completed"
        except Exception as error:  # the search ends; its finished trials stay registered
            if self._closed.is_set():
                return  # the store is closing under us; the stored job stays as it was
            search.error = f"{type(error).__name__}: {error}"
            self.jobs.emit(Failed(search.id, search.error, result=search.result()))
            search.status = "failed"
