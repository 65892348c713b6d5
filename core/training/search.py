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

from core.auth import ANONYMOUS
from core.errors import InvalidInput, NotFound
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


@dataclass
class Search:
    id: str
    spec: SearchSpec
    base: TrainingSpec
    created_at: datetime
    status: str = "running"
    trials: list[dict] = field(default_factory=list)  # {job_id, params, status, val_loss}
    error: str | None = None
    user: str = ANONYMOUS  # who started it; every trial's job is recorded under this name

    @property
    def best(self) -> dict | None:
        done = [t for t in self.trials if t.get("val_loss") is not None]
        return min(done, key=lambda t: t["val_loss"], default=None)

    def to_dict(self) -> dict:
        return {"id": self.id, "method": self.spec.method, "space": self.spec.space,
                "budget": self.spec.trials, "status": self.status, "trials": self.trials,
                "best": self.best, "error": self.error, "user": self.user,
                "created_at": self.created_at.isoformat()}


class SearchService:
    """Runs searches in background threads, one trial at a time through the job runner."""

    def __init__(self, runner, *, poll_interval: float = 1.0) -> None:
        self.runner = runner
        self.poll_interval = poll_interval
        self._searches: dict[str, Search] = {}
        self._stop: dict[str, threading.Event] = {}

    def start(self, base: TrainingSpec, spec: SearchSpec, *, train=None, validation=None,
              kind: str | None = None, user: str = ANONYMOUS) -> Search:
        self.runner.resolve_data(base, train, validation, kind)  # bad data fails here, at once
        search = Search(uuid.uuid4().hex[:10], spec, base, datetime.now(), user=user)
        self._searches[search.id] = search
        self._stop[search.id] = threading.Event()
        data = {"train": train, "validation": validation, "kind": kind}
        threading.Thread(target=self._run, args=(search, data), daemon=True,
                         name=f"search-{search.id}").start()
        return search

    def get(self, search_id: str) -> Search:
        if search_id not in self._searches:
            raise NotFound(f"no hyperparameter search {search_id!r}")
        return self._searches[search_id]

    def list(self) -> list[Search]:
        return sorted(self._searches.values(), key=lambda s: s.created_at, reverse=True)

    def close(self) -> None:
        for stop in self._stop.values():
            stop.set()

    def stop(self, search_id: str) -> Search:
        search = self.get(search_id)
        self._stop[search_id].set()
        for trial in search.trials:
            if trial["status"] in ("queued", "running"):
                self.runner.stop(trial["job_id"])
        return search

    def _trial(self, search: Search, params: dict, data: dict) -> float | None:
        spec = replace(search.base, name=f"search {search.id} #{len(search.trials) + 1}", **{
            name: SEARCHABLE[name](value) for name, value in params.items()})
        job = self.runner.submit(spec, **data, name=spec.name, user=search.user)
        trial = {"job_id": job.id, "params": params, "status": job.status, "val_loss": None}
        search.trials.append(trial)
        while (record := self.runner.get(job.id)).status not in ("completed", "stopped",
                                                                 "failed"):
            trial["status"] = record.status
            time.sleep(self.poll_interval)
        trial["status"] = record.status
        trial["model_id"] = record.model_id
        value = record.metrics.get("val_loss") if record.status == "completed" else None
        trial["val_loss"] = value if value is not None and math.isfinite(value) else None
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
            search.status = "stopped" if stop.is_set() else "completed"
        except Exception as error:  # the search ends; its finished trials stay registered
            search.status, search.error = "failed", f"{type(error).__name__}: {error}"
