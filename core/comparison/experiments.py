"""A/B experiments in live chat: stable arm assignment per user, per-arm results, a decision."""

from __future__ import annotations

import hashlib
import math
import uuid
from dataclasses import asdict, dataclass
from datetime import datetime, timedelta

from core.comparison.stats import fisher_exact_test, mann_whitney_test, two_proportion_z_test
from core.errors import Conflict, InvalidInput, NotFound, RefineryError
from core.serving.modelspec import ModelResolver, ResolvedModel
from core.store.arena import ArenaStore, ExperimentRecord

METRICS = ("thumbs", "stars")


@dataclass(frozen=True, kw_only=True)
class ExperimentSpec:
    name: str
    model_a: str
    model_b: str
    split_b: float = 0.5  # the share of users served model B
    end_rated_turns: int | None = None
    duration_hours: float | None = None
    metric: str = "thumbs"  # what decides: thumbs-up rate or star ratings
    alpha: float = 0.05

    def __post_init__(self) -> None:
        if not self.name.strip():
            raise InvalidInput("the experiment needs a name")
        if not self.model_a.strip() or not self.model_b.strip():
            raise InvalidInput("name model A and model B")
        if self.model_a.strip() == self.model_b.strip():
            raise InvalidInput("model A and model B are the same")
        if not 0 < self.split_b < 1:
            raise InvalidInput(f"the share of traffic to B must be in (0, 1), got {self.split_b}")
        if self.end_rated_turns is None and self.duration_hours is None:
            raise InvalidInput("give an end condition: a number of rated turns or a duration")
        if self.end_rated_turns is not None and self.end_rated_turns < 2:
            raise InvalidInput("the number of rated turns to end after must be at least 2")
        if self.duration_hours is not None and not 0 < self.duration_hours <= 24 * 365:
            raise InvalidInput("the duration must be more than 0 and at most a year (in hours)")
        if self.metric not in METRICS:
            raise InvalidInput(f"metric must be one of {', '.join(METRICS)}, got {self.metric!r}")
        if not 0 < self.alpha < 1:
            raise InvalidInput(f"alpha must be between 0 and 1, got {self.alpha}")


@dataclass(frozen=True)
class Assignment:
    experiment_id: str
    arm: str  # 'A' or 'B'
    model: ResolvedModel
    resolver: ModelResolver

    def prepare(self, messages: list[dict]) -> list[dict]:
        """The arm's prompt: a few-shot arm gets its examples after the system prompt."""
        return self.resolver.with_fewshot(messages)[0] if self.model.fewshot else messages


def arm_for(experiment_id: str, user: str, split_b: float) -> str:
    """Deterministic across processes and restarts (hashlib, never the salted hash())."""
    digest = hashlib.sha256(f"{experiment_id}\x00{user}".encode()).digest()
    fraction = int.from_bytes(digest[:8], "big") / 2**64
    return "B" if fraction < split_b else "A"


@dataclass(frozen=True, kw_only=True)
class ArmResult:
    arm: str
    model: str
    turns: int
    rated_turns: int
    mean_stars: float | None
    star_ratings: int
    thumbs_up: int
    thumbs_down: int
    thumbs_up_rate: float | None
    mean_latency_ms: float | None


class ExperimentService:
    """At most one experiment runs at a time; its arms decide which model chat serves."""

    def __init__(self, store: ArenaStore, resolver: ModelResolver) -> None:
        self.store = store
        self.resolver = resolver

    def create(self, spec: ExperimentSpec) -> ExperimentRecord:
        for name in (spec.model_a, spec.model_b):  # an unknown model fails before anything runs
            self.resolver.resolve(name)
        if (current := self.running()) is not None:
            raise Conflict(f"experiment {current.name!r} is still running; stop it first")
        now = datetime.now()
        record = ExperimentRecord(
            id=uuid.uuid4().hex,
            name=spec.name.strip(),
            created_at=now,
            model_a=spec.model_a.strip(),
            model_b=spec.model_b.strip(),
            split_b=spec.split_b,
            metric=spec.metric,
            alpha=spec.alpha,
            end_rated_turns=spec.end_rated_turns,
            ends_at=now + timedelta(hours=spec.duration_hours) if spec.duration_hours else None,
            status="running",
            ended_at=None,
        )
        self.store.add_experiment(record)
        return record

    def get(self, experiment_id: str) -> ExperimentRecord:
        record = self.store.get_experiment(experiment_id)
        if record is None:
            raise NotFound(f"no experiment with id {experiment_id!r}")
        return self._check_end(record)

    def history(self) -> list[ExperimentRecord]:
        return [self._check_end(record) for record in self.store.experiments()]

    def running(self) -> ExperimentRecord | None:
        for record in self.store.experiments("running"):
            if self._check_end(record).status == "running":
                return record
        return None

    def stop(self, experiment_id: str) -> ExperimentRecord:
        self.get(experiment_id)
        self.store.end_experiment(experiment_id)
        return self.get(experiment_id)

    def assign(self, user: str, chosen_model: str | None = None) -> Assignment | None:
        """The running experiment's arm for this user; None when nothing runs or the person
        explicitly chose a model (an explicit choice is not part of the experiment)."""
        record = None if chosen_model else self.running()
        if record is None:
            return None
        try:  # both arms: a comparison with one model gone means nothing any more
            models = {"A": self.resolver.resolve(record.model_a),
                      "B": self.resolver.resolve(record.model_b)}
        except RefineryError:  # e.g. an adapter was deleted: end it rather than break chat
            self.store.end_experiment(record.id)
            return None
        arm = arm_for(record.id, user, record.split_b)
        return Assignment(record.id, arm, models[arm], self.resolver)

    def record_turn(self, interaction_id: str, assignment: Assignment) -> None:
        self.store.add_experiment_turn(interaction_id, assignment.experiment_id, assignment.arm)

    def _check_end(self, record: ExperimentRecord) -> ExperimentRecord:
        if record.status != "running":
            return record
        expired = record.ends_at is not None and datetime.now() >= record.ends_at
        rated = sum(row["rated"] for row in self.store.experiment_turns(record.id))
        if expired or (record.end_rated_turns is not None and rated >= record.end_rated_turns):
            self.store.end_experiment(record.id)
            return self.store.get_experiment(record.id)
        return record

    def results(self, experiment_id: str) -> dict:
        record = self.get(experiment_id)
        rows = self.store.experiment_turns(record.id)
        arms = {
            arm: _arm_result(arm, model, [r for r in rows if r["arm"] == arm])
            for arm, model in (("A", record.model_a), ("B", record.model_b))
        }
        a, b = arms["A"], arms["B"]
        up_a, n_a = a.thumbs_up, a.thumbs_up + a.thumbs_down
        up_b, n_b = b.thumbs_up, b.thumbs_up + b.thumbs_down
        stars = {arm: [r["stars"] for r in rows if r["arm"] == arm and r["stars"]] for arm in arms}
        tests = {
            "thumbs_z": asdict(two_proportion_z_test(up_a, n_a, up_b, n_b)),
            "thumbs_fisher": asdict(fisher_exact_test(up_a, n_a, up_b, n_b)),
            "stars_mann_whitney": asdict(mann_whitney_test(stars["A"], stars["B"])),
        }
        primary = "thumbs_fisher" if record.metric == "thumbs" else "stars_mann_whitney"
        p_value = tests[primary]["p_value"]
        return {
            "experiment": asdict(record),
            "arms": {arm: asdict(result) for arm, result in arms.items()},
            "tests": tests,
            "primary_test": primary,
            "p_value": p_value,
            "recommendation": _recommend(record, a, b, p_value),
        }


def _arm_result(arm: str, model: str, rows: list[dict]) -> ArmResult:
    stars = [r["stars"] for r in rows if r["stars"] is not None]
    up = sum(r["thumb"] == "up" for r in rows)
    down = sum(r["thumb"] == "down" for r in rows)
    latencies = [r["latency_ms"] for r in rows]
    return ArmResult(
        arm=arm,
        model=model,
        turns=len(rows),
        rated_turns=sum(bool(r["rated"]) for r in rows),
        mean_stars=sum(stars) / len(stars) if stars else None,
        star_ratings=len(stars),
        thumbs_up=up,
        thumbs_down=down,
        thumbs_up_rate=up / (up + down) if up + down else None,
        mean_latency_ms=sum(latencies) / len(latencies) if latencies else None,
    )


def _recommend(record: ExperimentRecord, a: ArmResult, b: ArmResult, p_value) -> str:
    """'deploy B' or 'keep A' on a significant difference; 'keep A' when it ended without one."""
    if p_value is not None and p_value < record.alpha:
        if record.metric == "thumbs":
            b_better = (b.thumbs_up_rate or 0) > (a.thumbs_up_rate or 0)
        else:
            b_better = (b.mean_stars or -math.inf) > (a.mean_stars or -math.inf)
        return "deploy B" if b_better else "keep A"
    return "keep A" if record.status == "ended" else "keep collecting"
