"""Automated retraining: when enough new curated examples arrive, run the loop once more.

A cycle builds a dataset version from the curated feedback, continues the promoted adapter on it
(the 'incremental update' preset; from the base model when nothing is promoted), evaluates the
new adapter against the promoted model, and opens a blind comparison or a live A/B experiment.
It never promotes: that stays behind the arena's evidence gate. Each cycle is a job on the
studio's job list (kind 'retraining'), its stage the job's progress. Each cycle's state is stored
after every step, so a restarted app continues a cycle instead of repeating it, and the content
ids of the examples a cycle used are recorded so the same data never starts a second cycle.
"""

from __future__ import annotations

import sys
import threading
import uuid
from dataclasses import dataclass, field, fields, replace
from datetime import datetime, timedelta

from core.comparison.arena import CompareRequest
from core.comparison.evaluation import EvalRequest
from core.comparison.experiments import ExperimentSpec
from core.datasets.kinds import fold_turns, sft_rows
from core.datasets.rows import normalise_row
from core.datasets.versions import BuildSpec
from core.errors import Busy, Conflict, InvalidInput, NotFound, RefineryError
from core.feedback.turn_filter import TurnFilter
from core.jobs import (
    ACTIVE,
    RETRAINING,
    Cancelled,
    Failed,
    JobBoard,
    Progressed,
    Queued,
    Started,
    Succeeded,
)
from core.serving.generation import GenerationOptions
from core.serving.modelspec import BASE
from core.store.jobs import JobStore
from core.store.retraining import CycleRecord, RetrainingStore
from core.training.spec import INCREMENTAL, TrainingSpec

FOLLOW_UPS = ("blind", "experiment")
AUTOMATION = "automation"  # the user name on everything the automation does
DATASET_NAME = "auto-retraining"
STAGES = ("started", "dataset_built", "training", "trained", "evaluated")  # then the follow-up
RESERVED_TRAINING_OPTIONS = ("base_model", "dataset_id", "init_adapter")


@dataclass(frozen=True, kw_only=True)
class RetrainingPolicy:
    """When to retrain and what to do after; off until someone turns it on."""

    enabled: bool = False
    min_new_examples: int = 20
    min_interval_hours: float = 24.0
    selection: TurnFilter = field(default_factory=TurnFilter)
    min_rating: int = 4  # an answer without a correction needs this many stars (or a thumb up)
    validation_fraction: float = 0.1
    training: dict = field(default_factory=dict)  # training options over the preset's defaults
    follow_up: str = "blind"  # 'blind': blind comparisons to vote on; 'experiment': live A/B
    comparison_prompts: int = 10  # blind: held-out prompts answered by both models
    experiment_rated_turns: int = 100  # experiment: ends after this many rated turns
    experiment_split: float = 0.5  # experiment: share of users served the new adapter
    eval_items: int = 20  # held-out examples each model is evaluated on
    max_new_tokens: int = 64  # per answer, in evaluations and comparisons

    def __post_init__(self) -> None:
        checks = [
            (self.min_new_examples >= 1, "min_new_examples must be at least 1"),
            (0 <= self.min_interval_hours <= 24 * 365, "min_interval_hours must be 0 to 8760"),
            (1 <= self.min_rating <= 5, "min_rating must be 1-5"),
            (0 <= self.validation_fraction < 1, "validation_fraction must be in [0, 1)"),
            (self.follow_up in FOLLOW_UPS, f"follow_up must be one of {', '.join(FOLLOW_UPS)}"),
            (1 <= self.comparison_prompts <= 200, "comparison_prompts must be 1-200"),
            (self.experiment_rated_turns >= 2, "experiment_rated_turns must be at least 2"),
            (0 < self.experiment_split < 1, "experiment_split must be in (0, 1)"),
            (1 <= self.eval_items <= 5000, "eval_items must be 1-5000"),
            (1 <= self.max_new_tokens <= 1024, "max_new_tokens must be 1-1024"),
            (isinstance(self.training, dict), "training must be an object of training options"),
        ]
        for ok, message in checks:
            if not ok:
                raise InvalidInput(message)
        reserved = sorted(set(self.training) & set(RESERVED_TRAINING_OPTIONS))
        if reserved:
            raise InvalidInput(f"the automation chooses {', '.join(reserved)} itself")
        TrainingSpec.from_dict({"base_model": "any", **self.training})  # unknown or bad options

    def to_dict(self) -> dict:
        data = {f.name: getattr(self, f.name) for f in fields(self)}
        return {**data, "selection": self.selection.to_dict()}

    @classmethod
    def from_dict(cls, data: dict) -> RetrainingPolicy:
        known = {f.name for f in fields(cls)}
        unknown = sorted(set(data) - known)
        if unknown:
            raise InvalidInput(f"unknown retraining option(s): {', '.join(unknown)}")
        data = dict(data)
        if isinstance(data.get("selection"), dict):
            data["selection"] = TurnFilter.from_dict(data["selection"])
        try:
            return cls(**data)
        except TypeError as error:
            raise InvalidInput(f"bad retraining options: {error}") from error


@dataclass(frozen=True)
class RetrainingAction:
    """What a check decided to do, and why."""

    reason: str
    new_example_ids: tuple[str, ...]
    incumbent: str  # what serves now: the promoted adapter id or 'base'
    parent_adapter: str | None  # the adapter to continue; None trains from the base model


class RetrainingService:
    def __init__(self, store: RetrainingStore, *, datasets, training, registry, evaluations,
                 arena, experiments, poll_interval: float = 5.0,
                 jobs: JobBoard | None = None) -> None:
        self.store = store
        self.jobs = jobs or JobBoard(JobStore(store.db))
        self.datasets = datasets
        self.training = training
        self.registry = registry
        self.evaluations = evaluations
        self.arena = arena
        self.experiments = experiments
        self.poll_interval = poll_interval
        self._lock = threading.Lock()
        self._closed = threading.Event()
        self._interrupt = threading.Event()  # set by close() and cancel(): long steps end early
        self._thread: threading.Thread | None = None
        self._candidates: tuple[tuple, list[str]] | None = None  # (feedback fingerprint, ids)

    # --- the policy -------------------------------------------------------------------------

    def policy(self) -> RetrainingPolicy:
        stored = self.store.policy()
        return RetrainingPolicy.from_dict(stored) if stored else RetrainingPolicy()

    def set_policy(self, policy: RetrainingPolicy, *, user: str = "anonymous") -> RetrainingPolicy:
        before = self.policy()
        self.store.put_policy(policy.to_dict(), user.strip() or "anonymous")
        changed = sorted(k for k, v in policy.to_dict().items() if before.to_dict()[k] != v)
        if before.enabled != policy.enabled:
            reason = f"{user} turned automated retraining {'on' if policy.enabled else 'off'}"
        else:
            reason = f"{user} changed {', '.join(changed) or 'nothing'}"
        self.store.log(None, "policy", reason, {"changed": changed})
        if policy.enabled:
            self.ensure_started()
        return policy

    # --- the decision -----------------------------------------------------------------------

    def candidate_ids(self, policy: RetrainingPolicy) -> list[str]:
        """Content ids of the sft examples the policy's selection gives now (as a build would).

        Remembered until a rating or curation label changes: the loop asks every few seconds."""
        key = (self.store.feedback_fingerprint(), repr(policy.selection), policy.min_rating)
        if self._candidates is not None and self._candidates[0] == key:
            return self._candidates[1]
        frame = self.datasets.curation.all_rows(policy.selection)
        turns = fold_turns(frame[frame["include"].astype(bool)])
        rows = sft_rows(turns, min_rating=policy.min_rating)
        ids = sorted({normalise_row("sft", row, n)["id"] for n, row in enumerate(rows, 1)})
        self._candidates = (key, ids)
        return ids

    def new_example_ids(self, policy: RetrainingPolicy) -> list[str]:
        consumed = self.store.consumed()
        return [i for i in self.candidate_ids(policy) if i not in consumed]

    def decide(self, now: datetime, *, manual: bool = False) -> tuple[RetrainingAction | None, str]:
        """Whether a cycle should start now, and the reason either way (pure: reads only)."""
        policy = self.policy()
        if not policy.enabled and not manual:
            return None, "automated retraining is off"
        current = self.store.open_cycle()
        if current is not None:
            return None, f"cycle {current.id[:8]} is still in progress ({current.state})"
        last = next(iter(self.store.cycles(limit=1)), None)
        if last is not None and not manual:  # a person asking now overrides the interval
            wait_until = last.created_at + timedelta(hours=policy.min_interval_hours)
            if now < wait_until:
                return None, (f"the last run started {last.created_at:%Y-%m-%d %H:%M}; "
                              f"next run allowed after {wait_until:%Y-%m-%d %H:%M}")
        new = self.new_example_ids(policy)
        if len(new) < policy.min_new_examples:
            return None, (f"{len(new)} new curated example(s) since the last run; "
                          f"{policy.min_new_examples} needed")
        active = self.registry.active()
        source = f"continuing promoted adapter {active.id}" if active else "from the base model"
        reason = (f"{len(new)} new curated example(s) (threshold {policy.min_new_examples})"
                  + (f", {policy.min_interval_hours:g} h since the last run"
                     if last and not manual else "")
                  + f"; training {source}")
        return RetrainingAction(reason, tuple(new), active.id if active else BASE,
                                active.id if active else None), reason

    def check(self, now: datetime) -> RetrainingAction | None:
        return self.decide(now)[0]

    # --- the cycle state machine ------------------------------------------------------------

    def step(self, now: datetime) -> CycleRecord | None:
        """Advance the open cycle as far as it can go now, or start one if the policy fires."""
        with self._lock:
            cycle = self.store.open_cycle()
            if cycle is None:
                action = self.check(now)
                if action is None:
                    return None
                cycle = self._start(action, now)
            return self._advance(cycle)

    def run_now(self, now: datetime, *, user: str = "anonymous") -> dict:
        """One check on request, even with the policy off or within its interval; starts a cycle
        if there are enough new examples and none is open.

        Only the quick steps (dataset, job submission) run here; the background loop does the
        rest, so the request returns in seconds."""
        if not self._lock.acquire(timeout=1):
            raise Busy("the automation is busy with a step; try again in a moment")
        try:
            action, reason = self.decide(now, manual=True)
            if action is None:
                return {"started": False, "reason": reason, "cycle": None}
            cycle = self._start(replace(action, reason=f"{user} asked: {action.reason}"), now)
            cycle = self._advance(cycle, quick_only=True)
        finally:
            self._lock.release()
        self.ensure_started()
        return {"started": True, "reason": action.reason, "cycle": cycle}

    def cancel(self, cycle_id: str) -> CycleRecord:
        """Stop an open cycle where it stands: its training job stops and keeps its checkpoint,
        a running evaluation or comparison ends after its current answer, nothing further opens,
        and the examples it used count as new again. Also the canceller of its job on /jobs."""
        cycle = self.store.get_cycle(cycle_id)
        if cycle is None:
            raise NotFound(f"no retraining cycle {cycle_id!r}")
        stage = cycle.state.replace("_", " ")
        reason = f"cancelled at stage '{stage}'"
        if not self.store.update_cycle(cycle_id, state="cancelled", error=reason):
            raise Conflict(f"retraining cycle {cycle_id} has ended already "
                           f"({self.store.get_cycle(cycle_id).state.replace('_', ' ')})")
        self._interrupt.set()
        self.store.release(cycle_id)
        self.store.log(cycle_id, "cancelled", f"{reason}; its examples count as new again", {})
        cycle = self.store.get_cycle(cycle_id)
        self._stop_training(cycle)
        self._report(cycle)
        return cycle

    def _start(self, action: RetrainingAction, now: datetime) -> CycleRecord:
        policy = self.policy()
        cycle = CycleRecord(
            id=uuid.uuid4().hex, created_at=now, updated_at=now, state="started",
            reason=action.reason, follow_up=policy.follow_up, incumbent=action.incumbent,
            parent_adapter=action.parent_adapter, dataset_id=None, job_id=None, model_id=None,
            evaluations={}, comparison_ids=[], experiment_id=None, error=None,
        )
        self._interrupt.clear()
        self.store.add_cycle(cycle)
        self.jobs.emit(Queued(cycle.id, RETRAINING, "retraining cycle", AUTOMATION,
                              detail={"reason": action.reason, "follow_up": cycle.follow_up,
                                      "incumbent": cycle.incumbent}))
        self.jobs.emit(Started(cycle.id))
        self.store.log(cycle.id, "started", action.reason,
                       {"new_examples": len(action.new_example_ids), "policy": policy.to_dict()})
        return cycle

    def _advance(self, cycle: CycleRecord, *, quick_only: bool = False) -> CycleRecord:
        moves = {
            "started": self._build,
            "dataset_built": self._submit,
            "training": self._await_job,
            "trained": self._evaluate,
            "evaluated": self._follow_up,
        }
        slow = ("trained", "evaluated")
        while cycle.open and not self._closed.is_set():
            if quick_only and cycle.state in slow:
                break
            try:
                moved = moves[cycle.state](cycle)
            except RefineryError as error:
                self._fail(cycle, f"{cycle.state}: {error.message}")
                moved = True
            refreshed = self.store.get_cycle(cycle.id)
            if refreshed is not None and refreshed.state == "cancelled":
                self._stop_training(refreshed)  # a job submitted while the cancel came in
            if not moved or refreshed is None:
                return refreshed or cycle
            cycle = refreshed
            self._report(cycle)
        return cycle

    def _report(self, cycle: CycleRecord) -> None:
        """The cycle's stage on its job (a cycle begun before the job list has none)."""
        job = self.jobs.find(cycle.id)
        if job is None or job.status not in ACTIVE:
            return
        result = {"dataset_id": cycle.dataset_id, "job_id": cycle.job_id,
                  "model_id": cycle.model_id, "comparison_ids": cycle.comparison_ids,
                  "experiment_id": cycle.experiment_id}
        if cycle.state == "failed":
            self.jobs.emit(Failed(cycle.id, cycle.error or "failed", result=result))
        elif cycle.state == "cancelled":
            self.jobs.emit(Cancelled(cycle.id, cycle.error or "cancelled", result=result))
        elif cycle.state == "comparison_opened":
            self.jobs.emit(Succeeded(cycle.id, "comparison opened; people decide the promotion",
                                     result=result))
        else:
            self.jobs.emit(Progressed(cycle.id, progress=STAGES.index(cycle.state) / len(STAGES),
                                      message=cycle.state.replace("_", " "), result=result))

    def _fail(self, cycle: CycleRecord, reason: str) -> None:
        if self.store.update_cycle(cycle.id, state="failed", error=reason):  # not if cancelled
            self.store.log(cycle.id, "failed", reason, {})

    def _build(self, cycle: CycleRecord) -> bool:
        policy = self.policy()
        spec = BuildSpec(name=DATASET_NAME, kind="sft", selection=policy.selection,
                         min_rating=policy.min_rating,
                         validation_fraction=policy.validation_fraction)
        dataset = self.datasets.build(spec)
        ids = sorted({row["id"] for row in [*dataset.train, *dataset.validation]})
        self.store.consume(cycle.id, ids, state="dataset_built", dataset_id=dataset.id)
        self.store.log(cycle.id, "dataset_built",
                       f"built {dataset.name} v{dataset.version} with {len(dataset.train)} train "
                       f"and {len(dataset.validation)} validation examples",
                       {"dataset_id": dataset.id, "examples": len(ids)})
        return True

    def _training_job(self, cycle: CycleRecord):
        """The job this cycle submitted, found by its dataset (also before its id was stored)."""
        return next((j for j in self.training.list() if cycle.dataset_id
                     and j.dataset_id == cycle.dataset_id and j.user_id == AUTOMATION), None)

    def _stop_training(self, cycle: CycleRecord) -> None:
        job = self._training_job(cycle)
        if job is not None and job.status in ("queued", "running"):
            self.training.stop(job.id)  # it keeps its checkpoint and can be resumed by hand

    def _submit(self, cycle: CycleRecord) -> bool:
        # A job this cycle already submitted (before a crash) is reused, never submitted twice.
        job = self._training_job(cycle)
        if job is None:
            options = dict(self.policy().training)
            if cycle.parent_adapter:
                options["init_adapter"] = cycle.parent_adapter
                preset = INCREMENTAL
            else:
                preset = None
            spec = self.training.make_spec(options, dataset_id=cycle.dataset_id, preset=preset)
            job = self.training.submit(spec, name=f"{DATASET_NAME} · {cycle.dataset_id}",
                                       user=AUTOMATION)
            how = (f"incremental update of {cycle.parent_adapter}" if cycle.parent_adapter
                   else "LoRA from the base model")
            self.store.log(cycle.id, "job_submitted",
                           f"started training job {job.id}: {how} on {cycle.dataset_id}",
                           {"job_id": job.id, "spec": spec.to_dict()})
        self.store.update_cycle(cycle.id, state="training", job_id=job.id)
        return True

    def _await_job(self, cycle: CycleRecord) -> bool:
        job = self.training.get(cycle.job_id)
        if job.status == "completed":
            self.store.update_cycle(cycle.id, state="trained", model_id=job.model_id)
            loss = job.metrics.get("val_loss")
            note = f", validation loss {loss:.4g}" if isinstance(loss, float) else ""
            self.store.log(cycle.id, "job_finished",
                           f"job {job.id} completed and registered {job.model_id}{note}",
                           {"job_id": job.id, "model_id": job.model_id})
            return True
        if job.status in ("failed", "stopped"):
            self._fail(cycle, f"training job {job.id} {job.status}: {job.error or 'no detail'}")
            return True
        return False

    def _evaluate(self, cycle: CycleRecord) -> bool:
        policy = self.policy()
        dataset = self.datasets.get(cycle.dataset_id)
        if not dataset.validation:
            reason = "no held-out examples in the new dataset, so no automatic evaluation"
            self.store.update_cycle(cycle.id, state="evaluated", evaluations={})
            self.store.log(cycle.id, "evaluated", reason, {})
            return True
        runs = {}
        for role, model in (("candidate", cycle.model_id), ("incumbent", cycle.incumbent)):
            request = EvalRequest(model=model, dataset_id=cycle.dataset_id,
                                  limit=policy.eval_items, max_new_tokens=policy.max_new_tokens)
            run = self.evaluations.run(request, cancel=self._interrupt)
            if run["status"] == "cancelled":
                return False  # by a shutdown (evaluate again after the restart) or by cancel()
            runs[role] = {"id": run["id"], "model": model, "status": run["status"],
                          "metrics": run.get("metrics") or {}, "error": run.get("error")}
        self.store.update_cycle(cycle.id, state="evaluated", evaluations=runs)
        self.store.log(cycle.id, "evaluated", _evaluation_reason(runs), runs)
        return True

    def _follow_up(self, cycle: CycleRecord) -> bool:
        if cycle.follow_up == "experiment":
            return self._open_experiment(cycle)
        return self._open_blind(cycle)

    def _open_blind(self, cycle: CycleRecord) -> bool:
        policy = self.policy()
        prompts = self._prompts(cycle.dataset_id, policy.comparison_prompts)
        done = list(cycle.comparison_ids)
        options = GenerationOptions(max_new_tokens=policy.max_new_tokens)
        for prompt in prompts[len(done):]:
            if self._interrupt.is_set():
                return False  # continue after the restart from the comparisons stored so far
            request = CompareRequest(prompt=prompt, model_a=cycle.model_id,
                                     model_b=cycle.incumbent, blind=True, user=AUTOMATION,
                                     options=options)
            done.append(self.arena.compare(request).comparison.id)
            self.store.update_cycle(cycle.id, comparison_ids=done)
        self.store.update_cycle(cycle.id, state="comparison_opened")
        self.store.log(cycle.id, "comparison_opened",
                       f"opened {len(done)} blind comparisons of {cycle.model_id} against "
                       f"{cycle.incumbent}; vote on them to decide (the automation never promotes)",
                       {"comparison_ids": done})
        return True

    def _open_experiment(self, cycle: CycleRecord) -> bool:
        policy = self.policy()
        spec = ExperimentSpec(name=f"auto: {cycle.model_id} vs {cycle.incumbent}",
                              model_a=cycle.incumbent, model_b=cycle.model_id,
                              split_b=policy.experiment_split,
                              end_rated_turns=policy.experiment_rated_turns)
        try:
            record = self.experiments.create(spec)
        except Conflict as error:
            last = next(iter(self.store.actions(limit=1)), None)
            if not (last and last["cycle_id"] == cycle.id and last["action"] == "waiting"):
                self.store.log(cycle.id, "waiting", f"cannot open the experiment yet: "
                               f"{error.message}", {})
            return False
        self.store.update_cycle(cycle.id, state="comparison_opened", experiment_id=record.id)
        self.store.log(cycle.id, "comparison_opened",
                       f"started live A/B experiment {record.id[:8]}: {cycle.incumbent} (A) vs "
                       f"{cycle.model_id} (B), {policy.experiment_split:.0%} of users on B, ends "
                       f"after {policy.experiment_rated_turns} rated turns; promotion stays "
                       "with people", {"experiment_id": record.id})
        return True

    def _prompts(self, dataset_id: str, limit: int) -> list[str]:
        """Held-out prompts first, then training prompts; each once."""
        dataset = self.datasets.get(dataset_id)
        prompts = []
        for row in [*dataset.validation, *dataset.train]:
            prompt = next(m["content"] for m in reversed(row["messages"]) if m["role"] == "user")
            if prompt not in prompts:
                prompts.append(prompt)
        return prompts[:limit]

    # --- reading ----------------------------------------------------------------------------

    def open_cycle(self) -> CycleRecord | None:
        return self.store.open_cycle()

    def cycles(self, *, limit: int = 20) -> list[CycleRecord]:
        return self.store.cycles(limit=limit)

    def actions(self, *, limit: int = 50) -> list[dict]:
        return self.store.actions(limit=limit)

    def evidence(self, cycle: CycleRecord) -> str:
        """Where the cycle's comparison stands against the promotion gate."""
        if cycle.state != "comparison_opened":
            return cycle.error or f"in progress: {cycle.state}"
        if cycle.experiment_id:
            result = self.experiments.results(cycle.experiment_id)
            return (f"experiment {result['experiment']['status']}: "
                    f"recommendation {result['recommendation']!r}")
        gate = self.arena.gate(cycle.model_id, cycle.incumbent)
        return f"{'ready to promote' if gate.allowed else 'not promotable yet'}: {gate.reason}"

    def next_blind_pair(self, voter: str) -> dict | None:
        """The next blind comparison of the automation's cycles this voter has not voted on."""
        voted = {v["comparison_id"] for v in self.arena.store.votes() if v["voter"] == voter}
        for cycle in self.store.cycles(limit=20):
            for comparison_id in cycle.comparison_ids:
                if comparison_id in voted:
                    continue
                record = self.arena.store.get_comparison(comparison_id)
                left = self.arena.log.get_turn(record.left_interaction_id)
                right = self.arena.log.get_turn(record.right_interaction_id)
                return {"comparison_id": record.id, "prompt": record.prompt,
                        "left": left["response"], "right": right["response"]}
        return None

    # --- the background loop ----------------------------------------------------------------

    def ensure_started(self) -> None:
        if self._thread is None or not self._thread.is_alive():
            self._closed.clear()
            self._interrupt.clear()
            self._thread = threading.Thread(target=self._loop, name="retraining", daemon=True)
            self._thread.start()

    def resume_if_needed(self) -> None:
        """At app start: keep going when the policy is on or a cycle was left open."""
        if self.policy().enabled or self.store.open_cycle() is not None:
            self.ensure_started()

    def close(self) -> None:
        self._closed.set()
        self._interrupt.set()
        if self._thread is not None:
            self._thread.join(timeout=60)

    def _loop(self) -> None:
        while not self._closed.wait(self.poll_interval):
            try:
                self.step(datetime.now())
            except Exception as error:  # keep the loop alive; the log says what went wrong
                print(f"retraining: {type(error).__name__}: {error}", file=sys.stderr)


def _evaluation_reason(runs: dict) -> str:
    new, old = runs["candidate"], runs["incumbent"]
    failed = [f"{run['model']}: {run['error']}" for run in runs.values() if run["error"]]
    if failed:
        return f"evaluation failed ({'; '.join(failed)}); the comparison goes ahead without it"
    parts = []
    for metric in ("loss", "token_f1", "rouge_l"):
        a, b = new["metrics"].get(metric), old["metrics"].get(metric)
        if a is not None and b is not None:
            parts.append(f"{metric} {a:.3g} vs {b:.3g}")
    items = new["metrics"].get("items", 0)
    summary = "; ".join(parts) or "no comparable metrics"
    return f"{new['model']} vs {old['model']} on {items} held-out examples: {summary}"
