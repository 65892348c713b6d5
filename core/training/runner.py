"""Training jobs in the app process: run folders, the queue, worker processes, their events.

One job runs at a time; the rest wait in the queue. Each job is a worker
process (`python -m core.training.worker RUN_DIR`, started with an argument
list, no shell) in its own session, so closing the browser or restarting the
app does not stop it. A monitor thread follows every active job's
`events.jsonl` into the store, notices a dead worker within a poll or two, and
registers the adapter of every completed run.
"""

from __future__ import annotations

import json
import os
import signal
import subprocess
import sys
import threading
import uuid
from dataclasses import replace
from datetime import datetime
from pathlib import Path

from core.datasets.rows import normalise_row
from core.errors import Conflict, InvalidInput, NotFound
from core.jobs import (
    TRAINING,
    Cancelled,
    Failed,
    Job,
    JobBoard,
    Progressed,
    Queued,
    Requeued,
    Started,
    Succeeded,
)
from core.paths import AllowedFolders, looks_like_path
from core.serving.models import resolve_model_source
from core.serving.registry import ModelRegistry
from core.settings import child_environment, process_variable
from core.store.jobs import JobStore
from core.store.training import ACTIVE, JobRecord, TrainingStore
from core.training.data import LengthReport, length_report
from core.training.events import RunFolder, read_events, write_jsonl
from core.training.lora import TRAINED_IDS_FILE
from core.training.preference import check_preference_model
from core.training.spec import (
    DEFAULT,
    INCREMENTAL,
    KINDS,
    QUICK_TEST,
    RECIPES,
    TrainingSpec,
    incremental_update,
    recipe_spec,
)

ROOT = Path(__file__).resolve().parents[2]
MAX_ROWS = 1_000_000
NOT_METRICS = {"seq", "type", "time", "step", "total_steps", "progress", "eta_s", "elapsed_s",
               "tokens"}
PREFERENCE_METRICS = ("reward_margin", "reward_accuracy", "val_reward_margin",
                      "val_reward_accuracy", "dpo_beta")


def check_rows(rows: list[dict], kind: str, split: str) -> None:
    for index, row in enumerate(rows):
        try:
            normalise_row(kind, row, index)
        except InvalidInput as error:
            raise InvalidInput(f"{split} split of a {kind!r} dataset: {error.message}") from None


def metric_fields(event: dict) -> dict:
    """The numeric figures of a step or eval event, without its bookkeeping."""
    return {k: v for k, v in event.items() if k not in NOT_METRICS
            and isinstance(v, int | float) and not isinstance(v, bool)}


def pid_runs(pid: int | None, run_dir: str) -> bool:
    """Whether process `pid` is alive and is the worker of exactly this run folder."""
    if not pid:
        return False
    try:
        cmdline = Path(f"/proc/{pid}/cmdline").read_bytes().split(b"\0")
        status = Path(f"/proc/{pid}/stat").read_text().split(")")[-1].split()[0]
    except OSError:
        return False
    return status != "Z" and b"core.training.worker" in cmdline and run_dir.encode() in cmdline


class TrainingRunner:
    def __init__(self, store: TrainingStore, registry: ModelRegistry, *, runs_dir: Path,
                 models_dir: Path, default_model: str, datasets=None,
                 poll_interval: float = 0.5, processes: int | None = None,
                 folders: AllowedFolders | None = None, trust_remote_code: bool = False,
                 retrievers=None, jobs: JobBoard | None = None) -> None:
        self.store = store
        # every job's lifecycle is reported to the studio's one list of background work
        self.jobs = jobs or JobBoard(JobStore(store.db))
        self.folders = folders  # where base models and adapters named by a request may live
        self.trust_remote_code = trust_remote_code
        self.registry = registry
        self.runs_dir = runs_dir
        self.models_dir = models_dir
        self.default_model = default_model
        self.datasets = datasets  # services.datasets once it exists: .get(id) -> Dataset
        self.retrievers = retrievers  # services.retrievers: embedding runs' base and registry
        self.poll_interval = poll_interval
        # Data-parallel worker processes per job (torchrun); one per GPU on a multi-GPU machine.
        self.processes = processes or int(process_variable("REFINERY_TRAIN_PROCESSES", "1"))
        self._procs: dict[str, subprocess.Popen] = {}
        self._lock = threading.RLock()
        self._wake = threading.Event()
        self._closed = threading.Event()
        self._thread: threading.Thread | None = None
        self.on_registered: list = []  # (job, model) callbacks after a run's model is registered

    # --- public API -------------------------------------------------------------------------

    def make_spec(self, options: dict | None = None, *, dataset_id: str | None = None,
                  preset: str | None = None) -> TrainingSpec:
        """A spec from user options, with this studio's model as the default base.

        Every option naming a model or adapter goes through the allowed-folders check here,
        the one door of jobs, searches and retraining, before any work starts."""
        spec = self._preset_spec({"base_model": self.default_model, **(options or {})},
                                 dataset_id, preset)
        self.checked_base(spec)
        if spec.init_adapter:
            self.adapter_folder(spec.init_adapter)
        return spec

    def _preset_spec(self, options: dict, dataset_id: str | None,
                     preset: str | None) -> TrainingSpec:
        if dataset_id:
            options["dataset_id"] = dataset_id
        if preset in (None, "", DEFAULT):
            return TrainingSpec.from_dict(options)
        if preset == QUICK_TEST:
            return TrainingSpec.from_dict({**options, "max_steps": 5, "eval_every": 1})
        if preset == INCREMENTAL:
            parent = options.pop("init_adapter", None)
            if not parent:
                raise InvalidInput("the incremental update preset needs an adapter to continue")
            return incremental_update(TrainingSpec.from_dict(options), init_adapter=parent)
        if preset in RECIPES:
            if not dataset_id or self.datasets is None:
                raise InvalidInput(f"the {preset} preset needs a dataset id")
            spec = recipe_spec(TrainingSpec.from_dict(options), preset,
                               len(self.datasets.get(dataset_id).train))
            # options the caller set explicitly win over the recipe's budget
            return replace(spec, **{k: v for k, v in options.items()
                                    if k not in ("base_model", "dataset_id")})
        raise InvalidInput(f"unknown preset {preset!r}")

    def submit(self, spec: TrainingSpec, *, train: list[dict] | None = None,
               validation: list[dict] | None = None, kind: str | None = None,
               name: str = "", user: str = "anonymous") -> JobRecord:
        """Validate, write the run folder, queue the job, and start it if nothing runs."""
        train, validation, kind, version = self.resolve_data(spec, train, validation, kind)
        if spec.init_adapter:
            spec, train = self._incremental(spec, train)
        if spec.quantize_4bit:
            self._check_qlora()
        if kind == "embedding" and self.retrievers is not None:  # the base is a retriever id
            spec, model_path = self.retrievers.training_source(
                spec, train, default_model=self.default_model)
        else:
            model_path = resolve_model_source(self.checked_base(spec), self.models_dir)
        if kind == "preference":
            check_preference_model(model_path)
        if kind in ("sft", "text"):
            report = self.length_report(spec, train, kind, model_path)
            if report.dropped:
                raise InvalidInput(report.fix)
        job_id = uuid.uuid4().hex[:12]
        run = RunFolder(self.runs_dir / job_id)
        run.path.mkdir(parents=True)
        run.write_json(run.spec_path, spec.to_dict())
        run.write_json(run.job_path, {"job_id": job_id, "model_path": model_path, "kind": kind,
                                      "trust_remote_code": self.trust_remote_code})
        write_jsonl(run.train_path, train)
        write_jsonl(run.validation_path, validation)
        job = JobRecord(
            id=job_id, name=(name or spec.name or f"{kind} on {spec.dataset_id or 'rows'}")[:200],
            status="queued", spec=spec.to_dict(), kind=kind, dataset_id=spec.dataset_id,
            dataset_version=version, run_dir=str(run.path), pid=None, created_at=datetime.now(),
            started_at=None, finished_at=None, step=0, total_steps=None, progress=0.0,
            metrics={}, error=None, events_offset=0, model_id=None, user_id=user,
        )
        self.store.add(job)
        self.jobs.emit(Queued(job_id, TRAINING, job.name, user, detail=self._detail(job)))
        self.ensure_started()
        self._schedule()
        return self.get(job_id)

    def check(self, spec: TrainingSpec, *, train: list[dict] | None = None,
              kind: str | None = None) -> dict:
        """What a run would train on, before it starts: rows longer than max_length (fitted by
        cutting their prompt context) and rows that could not train, with the fix."""
        train, _, kind, _ = self.resolve_data(spec, train, None, kind)
        if kind not in ("sft", "text"):
            return {"kind": kind, "rows": len(train), "max_length": spec.max_length}
        model_path = resolve_model_source(self.checked_base(spec), self.models_dir)
        return {"kind": kind, **self.length_report(spec, train, kind, model_path).to_dict()}

    def length_report(self, spec: TrainingSpec, train: list[dict], kind: str,
                      model_path: str) -> LengthReport:
        from transformers import AutoConfig, AutoTokenizer

        trust = self.trust_remote_code
        tokenizer = AutoTokenizer.from_pretrained(model_path, trust_remote_code=trust)
        config = AutoConfig.from_pretrained(model_path, trust_remote_code=trust)
        return length_report(tokenizer, train, kind=kind, max_length=spec.max_length,
                             seq2seq=bool(getattr(config, "is_encoder_decoder", False)))

    def get(self, job_id: str) -> JobRecord:
        job = self.store.get(job_id)
        if job is None:
            raise NotFound(f"no training job {job_id!r}")
        return job

    def list(self) -> list[JobRecord]:
        return self.store.list()

    def history(self, job_id: str) -> dict:
        """Loss curves (train loss per step, validation loss per evaluation), and in `series`
        every numeric figure the step and eval events carry (e.g. DPO's reward_margin)."""
        self.get(job_id)
        events = self.store.events(job_id, types=("step", "eval"))
        series: dict[str, list[tuple[int, float]]] = {}
        for event in events:
            for key, value in metric_fields(event).items():
                series.setdefault(key, []).append((event["step"], value))
        return {"train": series.get("loss", []), "validation": series.get("val_loss", []),
                "series": series}

    def events(self, job_id: str, *, types: tuple[str, ...] | None = None) -> list[dict]:
        """The events a job's worker reported, oldest first."""
        return self.store.events(job_id, types=types)

    def log_tail(self, job_id: str, lines: int = 20) -> list[str]:
        job = self.get(job_id)
        texts = []
        for event in self.store.events(job_id, types=("log", "start", "checkpoint", "completed",
                                                      "stopped", "failed")):
            detail = event.get("message") or {k: v for k, v in event.items()
                                              if k not in ("seq", "type", "time")}
            stamp = datetime.fromtimestamp(event["time"]).strftime("%H:%M:%S")
            texts.append(f"{stamp} {event['type']}: {detail}")
        if job.error:
            texts.append(f"error: {job.error}")
        return texts[-lines:]

    def stop(self, job_id: str) -> JobRecord:
        """Queued: cancel. Running: ask the worker to save and exit (it keeps its checkpoint)."""
        with self._lock:
            job = self.get(job_id)
            if job.status == "queued":
                if self.store.claim(job_id, from_status="queued", to_status="stopped",
                                    finished_at=datetime.now()):
                    self.jobs.emit(Cancelled(job_id, "stopped before it started"))
            elif job.status == "running":
                if self.store.claim(job_id, from_status="running", to_status="stopping"):
                    self.jobs.emit(Progressed(job_id, message="stopping: saving a checkpoint"))
                self._signal(job, signal.SIGTERM)
            elif job.status != "stopping":
                raise Conflict(f"job {job_id} is {job.status}; only a queued or running job stops")
        self._wake.set()
        return self.get(job_id)

    def resume(self, job_id: str) -> JobRecord:
        """Queue a stopped or failed job again; its worker continues from the last checkpoint."""
        with self._lock:
            job = self.get(job_id)
            if job.status not in ("stopped", "failed"):
                raise Conflict(
                    f"job {job_id} is {job.status}; only a stopped or failed job resumes"
                )
            run = RunFolder(Path(job.run_dir))
            run.result_path.unlink(missing_ok=True)
            # progress restarts from the checkpoint, not from where the last worker got to
            if self.store.claim(job_id, from_status=job.status, to_status="queued", error=None,
                                finished_at=None, pid=None, step=run.resume_step()):
                self.jobs.emit(Requeued(job_id, "queued again; continues from its checkpoint"))
        self.ensure_started()
        self._schedule()
        return self.get(job_id)

    def reconcile(self) -> None:
        """On app start: re-attach to live workers of our runs; settle the rest; never relaunch."""
        known = {job.id for job in self.jobs.list(kinds=(TRAINING,), limit=1_000_000)}
        for job in self.store.list(limit=1_000_000):  # runs recorded before the one job list
            if job.id not in known:
                self.jobs.adopt(self._as_job(job))
        for job in self.store.list(statuses=("running", "stopping")):
            if not pid_runs(job.pid, job.run_dir):
                self._follow(job)
                self._settle(job, exit_code=None)
        if self.store.list(statuses=ACTIVE):
            self.ensure_started()
            self._schedule()

    def ensure_started(self) -> None:
        with self._lock:
            if self._thread is None or not self._thread.is_alive():
                self._closed.clear()
                self._thread = threading.Thread(target=self._monitor, name="training-monitor",
                                                daemon=True)
                self._thread.start()

    def close(self, *, stop_workers: bool = False) -> None:
        """Stop following; workers keep running (a restarted app re-attaches) unless asked."""
        if stop_workers:
            for job in self.store.list(statuses=("running", "stopping")):
                self._signal(job, signal.SIGTERM)
            for proc in list(self._procs.values()):
                try:
                    proc.wait(timeout=60)
                except subprocess.TimeoutExpired:
                    proc.kill()
        self._closed.set()
        self._wake.set()
        if self._thread is not None:
            self._thread.join(timeout=10)

    def poll(self) -> None:
        """One monitor pass: copy new events, settle finished workers, start the next job.

        The monitor thread and a caller (the CLI's follow loop) may poll at once: the lock
        makes each job settle, and its adapter register, exactly once."""
        with self._lock:
            for job in self.store.list(statuses=("running", "stopping")):
                self._follow(job)
                alive, code = self._alive(job)
                if not alive:
                    self._follow(self.get(job.id))
                    self._settle(self.get(job.id), exit_code=code)
            self._schedule()

    # --- internals --------------------------------------------------------------------------

    def resolve_data(self, spec, train, validation, kind):
        """(train rows, validation rows, kind, dataset version), checked."""
        version = None
        if train is None:
            if not spec.dataset_id:
                raise InvalidInput("give a dataset id or training rows")
            if self.datasets is None:
                raise InvalidInput("datasets are not available in this studio; pass rows")
            dataset = self.datasets.get(spec.dataset_id)
            train, validation = list(dataset.train), list(dataset.validation)
            kind, version = dataset.kind, str(dataset.version)
        kind = kind or "sft"
        validation = list(validation or [])
        if kind not in KINDS:
            raise InvalidInput(
                f"training needs a dataset of kind {' or '.join(KINDS)}, not {kind!r}"
            )
        if not train:
            raise InvalidInput("the training split is empty")
        if len(train) + len(validation) > MAX_ROWS:
            raise InvalidInput(f"at most {MAX_ROWS:,} rows per run")
        check_rows(train, kind, "training")
        check_rows(validation, kind, "validation")
        return list(train), validation, kind, version

    def checked_base(self, spec: TrainingSpec) -> str:
        """The base model a spec names, through the allowed-folders check (hub ids as is)."""
        if self.folders is not None and spec.base_model != self.default_model:
            return self.folders.model_source(spec.base_model)
        return spec.base_model

    def adapter_folder(self, reference: str) -> Path:
        """The folder of a parent adapter: a registered id, or a folder the check allows."""
        entry = self.registry.store.get(reference)
        if entry is not None:
            folder = Path(entry.adapter_dir)
        elif not looks_like_path(reference):
            folder = Path(self.registry.get(reference).adapter_dir)  # NotFound
        elif self.folders is not None:
            folder = self.folders.folder(reference)
        else:
            folder = Path(reference)
        if not (folder / "adapter_config.json").is_file():
            raise NotFound(f"no adapter {reference!r}: use a registered model id")
        return folder

    def _incremental(self, spec: TrainingSpec, train: list[dict]):
        """Resolve the parent adapter and keep only examples it has not been trained on."""
        folder = self.adapter_folder(spec.init_adapter)
        seen_file = folder / TRAINED_IDS_FILE
        seen = set(json.loads(seen_file.read_text())) if seen_file.is_file() else set()
        fresh = [row for row in train if row.get("id") not in seen]
        if not fresh:
            raise InvalidInput("every example was already used to train that adapter")
        return replace(spec, init_adapter=str(folder.resolve())), fresh

    def _check_qlora(self) -> None:
        import importlib.util

        import torch

        if not torch.cuda.is_available() or importlib.util.find_spec("bitsandbytes") is None:
            raise InvalidInput("4-bit QLoRA needs a CUDA GPU and the bitsandbytes package")

    def _schedule(self) -> None:
        with self._lock:
            if self.store.list(statuses=("running", "stopping")):
                return
            queued = sorted(self.store.list(statuses=("queued",)), key=lambda j: j.created_at)
            if queued:
                self._launch(queued[0])

    def _launch(self, job: JobRecord) -> None:
        run = RunFolder(Path(job.run_dir))
        env = child_environment(PYTHONPATH=os.pathsep.join(
            [str(ROOT), *filter(None, [process_variable("PYTHONPATH")])]))
        command = ["-m", "core.training.worker", str(run.path)]
        if self.processes > 1:
            command = ["-m", "torch.distributed.run", "--standalone",
                       f"--nproc_per_node={self.processes}", *command]
        with run.log_path.open("ab") as log:
            proc = subprocess.Popen(
                [sys.executable, *command],
                cwd=ROOT, env=env, stdin=subprocess.DEVNULL, stdout=log, stderr=log,
                start_new_session=True,  # survives the app's terminal and restarts
            )
        self._procs[job.id] = proc
        if not self.store.claim(job.id, from_status="queued", to_status="running", pid=proc.pid,
                                started_at=datetime.now()):
            proc.terminate()  # someone else settled this job first; never run it twice
            return
        self.jobs.emit(Started(job.id))

    def _alive(self, job: JobRecord) -> tuple[bool, int | None]:
        proc = self._procs.get(job.id)
        if proc is not None:
            code = proc.poll()
            return code is None, code
        return pid_runs(job.pid, job.run_dir), None

    def _signal(self, job: JobRecord, sig: int) -> None:
        proc = self._procs.get(job.id)
        if proc is not None and proc.poll() is None:
            proc.send_signal(sig)
        elif pid_runs(job.pid, job.run_dir):
            os.kill(job.pid, sig)

    def _follow(self, job: JobRecord) -> None:
        events, offset = read_events(RunFolder(Path(job.run_dir)).events_path, job.events_offset)
        if not events:
            return
        fields: dict = {}
        metrics = dict(job.metrics)
        for event in events:
            if event["type"] == "start":
                fields["total_steps"] = event["total_steps"]
            elif event["type"] == "step":
                fields.update(step=event["step"], total_steps=event["total_steps"],
                              progress=event["progress"])
                metrics.update({k: event[k] for k in ("eta_s", "tokens", "elapsed_s")})
                metrics.update(metric_fields(event))
            elif event["type"] == "eval":
                metrics.update(metric_fields(event))
        self.store.append_events(job.id, events, offset=offset, metrics=metrics, **fields)
        if "step" in fields:
            self.jobs.emit(Progressed(
                job.id, progress=fields["progress"], eta_s=metrics.get("eta_s"),
                message=f"step {fields['step']} of {fields['total_steps']}"))

    def _settle(self, job: JobRecord, *, exit_code: int | None) -> None:
        """Decide a finished worker's outcome from its exit code, done marker and files."""
        run = RunFolder(Path(job.run_dir))
        result = run.result() or {}
        status = result.get("status")
        self._procs.pop(job.id, None)
        now = datetime.now()
        produced = run.has_sentence_model() if job.kind == "embedding" else run.has_adapter()
        if status == "completed" and exit_code in (0, None) and produced:
            metrics = {**job.metrics, **result.get("metrics", {})}
            model = self._register(job, metrics)
            # before the job reads as completed, so whoever sees it completed sees what the
            # callbacks started (the knowledge scores) too
            for callback in self.on_registered:
                try:
                    callback(job, model)
                except Exception as error:  # a follow-up never unsettles the run it follows
                    print(f"after training {job.id}: {type(error).__name__}: {error}",
                          file=sys.stderr)
            self.store.update(job.id, status="completed", finished_at=now, progress=1.0,
                              metrics=metrics, model_id=model.id, error=None)
            self.jobs.emit(Succeeded(job.id, f"registered as {model.id}",
                                     result={"model_id": model.id, "metrics": metrics}))
        elif status == "stopped" or (job.status == "stopping" and exit_code == -signal.SIGTERM):
            # A launcher (torchrun) may exit non-zero on SIGTERM; a worker stopped before it
            # set up its handler dies of the signal itself, with nothing to lose but the wait.
            metrics = {**job.metrics, **result.get("metrics", {})}
            self.store.update(job.id, status="stopped", finished_at=now, metrics=metrics)
            self.jobs.emit(Cancelled(job.id, "stopped; resume continues from its checkpoint",
                                     result={"metrics": metrics}))
        else:
            error = result.get("message") or self._death(run, exit_code)
            self.store.update(job.id, status="failed", finished_at=now, error=error)
            self.jobs.emit(Failed(job.id, error, result={"metrics": job.metrics}))

    def _death(self, run: RunFolder, exit_code: int | None) -> str:
        if exit_code is None:
            reason = "the worker process is gone (the app restarted or it was killed)"
        elif exit_code < 0:
            reason = f"the worker process was killed by signal {-exit_code}"
        else:
            reason = f"the worker process exited with code {exit_code}"
        try:
            tail = run.log_path.read_text(errors="replace").strip().splitlines()[-3:]
        except OSError:
            tail = []
        crashed = exit_code is not None and exit_code > 0
        return f"{reason}: {' | '.join(tail)}" if crashed and tail else reason

    @staticmethod
    def _detail(job: JobRecord) -> dict:
        return {"training_kind": job.kind, "dataset_id": job.dataset_id,
                "dataset_version": job.dataset_version}

    def _as_job(self, job: JobRecord) -> Job:
        """A training record in the one job shape (for runs recorded before the job list)."""
        status = {"completed": "succeeded", "stopped": "cancelled", "stopping": "running"}
        return Job(
            id=job.id, kind=TRAINING, name=job.name, status=status.get(job.status, job.status),
            user_id=job.user_id, progress=job.progress, eta_s=None, message=job.status,
            error=job.error, interrupted=False, detail=self._detail(job),
            result={"model_id": job.model_id, "metrics": job.metrics} if job.model_id else {},
            created_at=job.created_at, started_at=job.started_at, finished_at=job.finished_at,
            updated_at=datetime.now())

    def _register(self, job: JobRecord, metrics: dict):
        if job.kind == "embedding" and self.retrievers is not None:
            return self.retrievers.register_run(job, metrics)
        spec = job.spec
        run = RunFolder(Path(job.run_dir))
        parent = spec.get("init_adapter")
        parent_model = next((m.id for m in self.registry.list()
                             if parent and Path(m.adapter_dir) == Path(parent)), None)
        return self.registry.register(
            model_id=f"adapter-{job.id}", name=job.name, base_model=spec["base_model"],
            adapter_dir=run.adapter_dir, job_id=job.id, config=spec,
            dataset_id=job.dataset_id, dataset_version=job.dataset_version,
            metrics={**{k: metrics.get(k) for k in ("train_loss", "val_loss", "perplexity",
                                                     "steps", "tokens", "tokens_per_s")},
                     **{k: metrics[k] for k in PREFERENCE_METRICS if k in metrics}},
            duration_s=metrics.get("duration_s"),
            lineage={"job_id": job.id, "kind": job.kind, "run_dir": job.run_dir,
                     "dataset_id": job.dataset_id,
                     "dataset_version": job.dataset_version, "parent_adapter": parent,
                     "parent_model": parent_model,
                     "train_examples": sum(1 for _ in run.train_path.open()),
                     "validation_examples": sum(1 for _ in run.validation_path.open())},
        )

    def _monitor(self) -> None:
        while not self._closed.is_set():
            try:
                self.poll()
            except Exception as error:  # keep following the other jobs; report, do not die
                print(f"training monitor: {type(error).__name__}: {error}", file=sys.stderr)
            self._wake.wait(self.poll_interval)
            self._wake.clear()
