"""Dataset builds whose rows the base model writes, as background jobs: progress, ETA, cancel,
resume.

The model writes in batches (several prompts per forward pass). Every finished batch is
appended to the job's cache file, so a cancelled or failed job resumes where it stopped: the
build runs again and each prompt already written is read back instead of written again.
One build writes at a time; the others wait their turn. Every build is a job on the studio's
job board with its spec, so builds of an earlier process are still listed (one cut off by a
restart as interrupted) and resume like any other.
"""

from __future__ import annotations

import hashlib
import json
import threading
import time
import uuid
from dataclasses import dataclass, field
from datetime import datetime
from pathlib import Path

from core.datasets.synthesis import Writer
from core.datasets.versions import BuildSpec, DatasetService
from core.errors import Conflict, NotFound
from core.jobs import (
    DATASET,
    Failed,
    Job,
    JobBoard,
    Progressed,
    Queued,
    Requeued,
    Started,
    Succeeded,
)
from core.jobs import Cancelled as JobCancelled
from core.store.jobs import JobStore

FINAL = ("completed", "cancelled", "failed")
STATUS = {"succeeded": "completed"}  # the job's status in this route's words


class Cancelled(Exception):
    """The job was asked to stop between two batches."""


@dataclass
class DatasetJob:
    id: str
    name: str
    spec: BuildSpec | None  # None: a build stored before specs were (it cannot resume)
    status: str = "queued"  # queued, running, completed, cancelled, failed
    written: int = 0  # prompts written (or read back from the cache) so far
    total: int = 0  # prompts asked for so far (a build may ask in several rounds)
    message: str = ""
    eta_s: float | None = None
    dataset_id: str | None = None
    error: str | None = None
    created_at: datetime = field(default_factory=datetime.now)
    finished_at: datetime | None = None

    @property
    def progress(self) -> float:
        if self.status == "completed":
            return 1.0
        return round(self.written / self.total, 4) if self.total else 0.0

    def to_dict(self) -> dict:
        return {"id": self.id, "name": self.name, "status": self.status,
                "progress": self.progress, "written": self.written, "total": self.total,
                "message": self.message, "eta_s": self.eta_s, "dataset_id": self.dataset_id,
                "error": self.error, "created_at": self.created_at.isoformat(),
                "finished_at": self.finished_at.isoformat() if self.finished_at else None}

    @classmethod
    def restored(cls, job: Job) -> DatasetJob:
        spec = BuildSpec.from_dict(job.detail["spec"]) if "spec" in job.detail else None
        return cls(id=job.id, name=job.name, spec=spec, status=STATUS.get(job.status, job.status),
                   written=job.result.get("written", 0), total=job.result.get("total", 0),
                   message=job.message, dataset_id=job.result.get("dataset_id"),
                   error=job.error, created_at=job.created_at, finished_at=job.finished_at)

    def result(self) -> dict:
        return {"written": self.written, "total": self.total, "dataset_id": self.dataset_id}


class DatasetJobs:
    def __init__(self, datasets: DatasetService, *, folder: Path, batch_size: int = 16,
                 jobs: JobBoard | None = None) -> None:
        self.datasets = datasets
        self.jobs = jobs or JobBoard(JobStore(datasets.store.db))
        self.folder = folder
        self.batch_size = batch_size
        self._jobs: dict[str, DatasetJob] = {}
        self._cancel: dict[str, threading.Event] = {}
        self._threads: dict[str, threading.Thread] = {}
        self._lock = threading.Lock()
        self._one_build = threading.Lock()

    def start(self, spec: BuildSpec) -> DatasetJob:
        job = DatasetJob(id=uuid.uuid4().hex[:12], name=spec.name, spec=spec)
        with self._lock:
            self._jobs[job.id] = job
        self.jobs.emit(Queued(job.id, DATASET, f"build {spec.name}",
                              detail={"dataset_kind": spec.kind, "recipe": spec.recipe,
                                      "spec": spec.to_dict()}))
        self._launch(job)
        return job

    def get(self, job_id: str) -> DatasetJob:
        job = self._jobs.get(job_id)
        if job is None:
            stored = self.jobs.find(job_id)
            if stored is None or stored.kind != DATASET:
                raise NotFound(f"no dataset job {job_id!r}")
            return DatasetJob.restored(stored)
        return job

    def list(self) -> list[DatasetJob]:
        earlier = [DatasetJob.restored(job) for job in self.jobs.list(kinds=(DATASET,))
                   if job.id not in self._jobs]
        return sorted([*self._jobs.values(), *earlier], key=lambda j: j.created_at,
                      reverse=True)

    def cancel(self, job_id: str) -> DatasetJob:
        job = self.get(job_id)
        if job.status in FINAL:
            raise Conflict(f"dataset job {job_id} is {job.status}")
        self._cancel[job_id].set()
        return job

    def resume(self, job_id: str) -> DatasetJob:
        job = self.get(job_id)
        if job.status not in ("cancelled", "failed"):
            raise Conflict(f"dataset job {job_id} is {job.status}; only a cancelled or failed "
                           "job resumes")
        if job.spec is None:
            raise Conflict(f"dataset job {job_id} has no stored spec; start the build again")
        self.jobs.emit(Requeued(job_id))
        with self._lock:
            self._jobs[job.id] = job  # a build of an earlier process is this one's again
        job.status, job.error, job.finished_at, job.written, job.total = (
            "queued", None, None, 0, 0)
        self._launch(job)
        return job

    def wait(self, job_id: str, timeout: float | None = None) -> DatasetJob:
        thread = self._threads.get(job_id)
        if thread is not None:
            thread.join(timeout)
        return self.get(job_id)

    def _launch(self, job: DatasetJob) -> None:
        self._cancel[job.id] = threading.Event()
        thread = threading.Thread(target=self._run, args=(job,), name=f"dataset-job-{job.id}",
                                  daemon=True)
        self._threads[job.id] = thread
        thread.start()

    def _run(self, job: DatasetJob) -> None:
        with self._one_build:
            job.status = "running"
            self.jobs.emit(Started(job.id))

            def report() -> None:
                self.jobs.emit(Progressed(job.id, progress=job.progress, eta_s=job.eta_s,
                                          message=job.message, result=job.result()))

            try:
                write = CachedWriter(job, Writer(self.datasets.models, seed=job.spec.seed),
                                     self.folder / job.id / "written.jsonl",
                                     self._cancel[job.id], self.batch_size, report)

                def progress(_fraction: float, message: str) -> None:
                    job.message = message
                    report()

                dataset = self.datasets.build(job.spec, progress=progress, write=write)
                job.dataset_id, job.status, job.message = dataset.id, "completed", "done"
                ending = Succeeded(job.id, f"built dataset {dataset.id}", result=job.result())
            except Cancelled:
                job.status, job.message = "cancelled", "cancelled; resume continues from here"
                ending = JobCancelled(job.id, job.message, result=job.result())
            except Exception as error:  # a failed job reports and can be resumed
                job.status, job.error = "failed", f"{type(error).__name__}: {error}"
                ending = Failed(job.id, job.error, result=job.result())
            job.eta_s = None
            job.finished_at = datetime.now()
            self.jobs.emit(ending)


class CachedWriter:
    """prompts -> texts through the model in batches, remembering every text on disk."""

    def __init__(self, job: DatasetJob, writer: Writer, path: Path, cancel: threading.Event,
                 batch_size: int, report=lambda: None) -> None:
        self.job, self.writer, self.path = job, writer, path
        self.cancel, self.batch_size, self.report = cancel, batch_size, report
        path.parent.mkdir(parents=True, exist_ok=True)
        self.cache: dict[str, str] = {}
        if path.is_file():
            for line in path.read_text(encoding="utf-8").splitlines():
                if line.strip():
                    item = json.loads(line)
                    self.cache[item["key"]] = item["text"]

    def __call__(self, prompts: list[str]) -> list[str]:
        seen: dict[str, int] = {}
        keys = []
        for prompt in prompts:  # the same prompt asked twice wants two samples
            seen[prompt] = seen.get(prompt, 0) + 1
            keys.append(hashlib.sha1(f"{seen[prompt]}:{prompt}".encode()).hexdigest())
        todo = [i for i, key in enumerate(keys) if key not in self.cache]
        self.job.total += len(prompts)
        self.job.written += len(prompts) - len(todo)
        started = time.perf_counter()
        for start in range(0, len(todo), self.batch_size):
            if self.cancel.is_set():
                raise Cancelled
            batch = todo[start:start + self.batch_size]
            texts = self.writer.write_many([prompts[i] for i in batch],
                                           batch_size=self.batch_size)
            with self.path.open("a", encoding="utf-8") as out:
                for i, text in zip(batch, texts, strict=True):
                    self.cache[keys[i]] = text
                    out.write(json.dumps({"key": keys[i], "text": text}) + "\n")
            self.job.written += len(batch)
            done = start + len(batch)
            per_prompt = (time.perf_counter() - started) / done
            self.job.eta_s = round(per_prompt * (len(todo) - done), 1)
            self.job.message = f"written {self.job.written} of {self.job.total}"
            self.report()
        return [self.cache[key] for key in keys]
