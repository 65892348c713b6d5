"""One lifecycle for every long task: training, searches, evaluations, dataset builds, checks.

A job is queued, then running, then succeeded, failed or cancelled; a failed or cancelled job
may be queued again (resume). Each service reports its work as events (the dataclasses below)
to the one `JobBoard`, which checks the transition and stores the job, so the studio lists
every kind of work in one shape and the list survives a restart. A job that was queued or
running when the app died is shown failed and `interrupted` on the next start, with what it
had produced (its `result`) kept.
"""

from __future__ import annotations

import sys
from collections.abc import Callable, Sequence
from dataclasses import dataclass, field
from datetime import datetime

from core.errors import Conflict, NotFound
from core.store.jobs import JobStore

QUEUED, RUNNING = "queued", "running"
SUCCEEDED, FAILED, CANCELLED = "succeeded", "failed", "cancelled"
ACTIVE = (QUEUED, RUNNING)
FINAL = (SUCCEEDED, FAILED, CANCELLED)
STATUSES = (*ACTIVE, *FINAL)
INTERRUPTED = "interrupted by a restart"

# the kinds of work; training covers every training run (sft, preference, embedding, ...)
TRAINING, SEARCH, EVALUATION = "training", "search", "evaluation"
DATASET, KNOWLEDGE, RETRAINING = "dataset", "knowledge", "retraining"
KINDS = (TRAINING, SEARCH, EVALUATION, DATASET, KNOWLEDGE, RETRAINING)


@dataclass(frozen=True)
class Queued:
    """A new job; `detail` says what it does (kind-specific, fixed for its life)."""

    job_id: str
    kind: str
    name: str
    user: str = "anonymous"
    detail: dict = field(default_factory=dict)


@dataclass(frozen=True)
class Started:
    job_id: str


@dataclass(frozen=True)
class Progressed:
    """Fields left None keep their value; `result` replaces what the job produced so far."""

    job_id: str
    progress: float | None = None
    eta_s: float | None = None
    message: str | None = None
    result: dict | None = None


@dataclass(frozen=True)
class Succeeded:
    job_id: str
    message: str = "done"
    result: dict | None = None


@dataclass(frozen=True)
class Failed:
    job_id: str
    error: str
    result: dict | None = None


@dataclass(frozen=True)
class Cancelled:
    job_id: str
    message: str = "cancelled"
    result: dict | None = None


@dataclass(frozen=True)
class Requeued:
    """A failed or cancelled job queued again (resume)."""

    job_id: str
    message: str = "queued again"


JobEvent = Queued | Started | Progressed | Succeeded | Failed | Cancelled | Requeued


@dataclass(frozen=True, kw_only=True)
class Job:
    id: str
    kind: str
    name: str
    status: str
    user_id: str
    progress: float
    eta_s: float | None
    message: str
    error: str | None
    interrupted: bool
    detail: dict
    result: dict
    created_at: datetime
    started_at: datetime | None
    finished_at: datetime | None
    updated_at: datetime

    def to_dict(self) -> dict:
        """The one JSON shape of a job, whatever its kind."""
        def stamp(value: datetime | None) -> str | None:
            return value.isoformat() if value else None

        return {
            "id": self.id, "kind": self.kind, "name": self.name, "status": self.status,
            "user": self.user_id, "progress": round(self.progress, 4), "eta_s": self.eta_s,
            "message": self.message, "error": self.error, "interrupted": self.interrupted,
            "detail": self.detail, "result": self.result, "created_at": stamp(self.created_at),
            "started_at": stamp(self.started_at), "finished_at": stamp(self.finished_at),
        }


Listener = Callable[[JobEvent, Job], None]
Canceller = Callable[[str], object]  # a service's own stop/cancel, given the job id


class JobBoard:
    """Applies job events to the stored jobs; the one list of background work."""

    def __init__(self, store: JobStore) -> None:
        self.store = store
        self.listeners: list[Listener] = []  # called after each stored event
        self.cancellers: dict[str, Canceller] = {}  # kind -> the service that stops its work

    def emit(self, event: JobEvent) -> Job:
        fields = self._transition(event)
        if fields is not None:
            self.store.update(event.job_id, **fields)
        job = self.get(event.job_id)
        for listener in self.listeners:
            try:
                listener(event, job)
            except Exception as error:  # a listener never breaks the work it watches
                print(f"job listener: {type(error).__name__}: {error}", file=sys.stderr)
        return job

    def _transition(self, event: JobEvent) -> dict | None:
        """The fields an event changes; None when there is nothing to store."""
        now = datetime.now()
        if isinstance(event, Queued):
            if self.store.get(event.job_id) is not None:
                raise Conflict(f"job {event.job_id} exists already")
            self.store.add({"id": event.job_id, "kind": event.kind, "name": event.name[:200],
                            "status": QUEUED, "user_id": event.user, "detail": event.detail,
                            "result": {}, "created_at": now, "message": "queued"})
            return None
        status = self.get(event.job_id).status
        result = {} if getattr(event, "result", None) is None else {"result": event.result}
        if isinstance(event, Progressed):
            if status in FINAL:
                return None  # a late report from work that was just cancelled or settled
            changes = {"progress": event.progress, "eta_s": event.eta_s,
                       "message": event.message}
            return {**{k: v for k, v in changes.items() if v is not None}, **result}
        if isinstance(event, Started):
            self._check(event, status, (QUEUED,))
            return {"status": RUNNING, "started_at": now, "message": "running"}
        if isinstance(event, Requeued):
            self._check(event, status, (FAILED, CANCELLED))
            return {"status": QUEUED, "error": None, "interrupted": False, "finished_at": None,
                    "eta_s": None, "message": event.message}
        self._check(event, status, ACTIVE)
        final = {"finished_at": now, "eta_s": None, **result}
        if isinstance(event, Succeeded):
            return {**final, "status": SUCCEEDED, "progress": 1.0, "message": event.message,
                    "error": None}
        if isinstance(event, Failed):
            return {**final, "status": FAILED, "error": event.error, "message": "failed"}
        return {**final, "status": CANCELLED, "message": event.message}

    def cancel(self, job_id: str) -> Job:
        """Ask the service that owns a queued or running job to stop it; the job turns
        cancelled when that service reports it (at once when queued, after the current step
        or batch when running)."""
        job = self.get(job_id)
        if job.status not in ACTIVE:
            raise Conflict(f"job {job_id} is {job.status} already; only queued or running jobs "
                           "can be cancelled")
        canceller = self.cancellers.get(job.kind)
        if canceller is None:
            raise Conflict(f"{job.kind} jobs cannot be cancelled")
        canceller(job_id)
        return self.get(job_id)

    @staticmethod
    def _check(event: JobEvent, status: str, allowed: tuple[str, ...]) -> None:
        if status not in allowed:
            raise Conflict(f"job {event.job_id} is {status}; cannot apply "
                           f"{type(event).__name__.lower()}")

    def get(self, job_id: str) -> Job:
        row = self.store.get(job_id)
        if row is None:
            raise NotFound(f"no job {job_id!r}")
        return Job(**row)

    def find(self, job_id: str) -> Job | None:
        row = self.store.get(job_id)
        return None if row is None else Job(**row)

    def list(self, *, kinds: Sequence[str] = (), statuses: Sequence[str] = (),
             limit: int = 200) -> list[Job]:
        return [Job(**row) for row in self.store.list(kinds=kinds, statuses=statuses,
                                                      limit=limit)]

    def interrupted(self, kinds: Sequence[str]) -> list[str]:
        """On start: jobs of `kinds` left queued or running by the last process are failed.
        (Training settles its own jobs: its workers outlive the app.)"""
        return self.store.interrupt(kinds=kinds, message=INTERRUPTED)

    def adopt(self, job: Job) -> None:
        """Store a job recorded before this board existed (an older data dir), as it is."""
        if self.store.get(job.id) is None:
            row = {k: v for k, v in job.__dict__.items() if k != "updated_at"}
            self.store.add(row)
