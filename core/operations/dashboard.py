"""The loop at a glance: plain data about documents, feedback, models, runs, experiments, drift
and the automation, gathered from the other services for the Dashboard tab and GET /dashboard."""

from __future__ import annotations

from collections import Counter
from dataclasses import asdict
from datetime import date, datetime

from core.errors import RefineryError
from core.operations.loop_state import next_step
from core.store.dashboard import DashboardQueries

RECENT = 10


def plain(value):
    """Datetimes as ISO text, recursively, so the summary is JSON as it is."""
    if isinstance(value, (datetime, date)):
        return value.isoformat()
    if isinstance(value, dict):
        return {key: plain(item) for key, item in value.items()}
    if isinstance(value, (list, tuple)):
        return [plain(item) for item in value]
    return value


class DashboardService:
    def __init__(self, queries: DashboardQueries, *, base_model: str, documents, registry,
                 training, experiments, retraining, drift=None, knowledge=None) -> None:
        self.queries = queries
        self.base_model = base_model
        self.documents = documents
        self.registry = registry
        self.training = training
        self.experiments = experiments
        self.retraining = retraining
        self.drift = drift
        self.knowledge = knowledge  # core.knowledge.runs.Scores: what each model knows

    def summary(self) -> dict:
        return plain({
            "generated_at": datetime.now(),
            "documents": {"documents": len(self.documents.list()),
                          "chunks": self.documents.store.count_chunks()},
            "feedback": self.queries.totals(),
            "ratings_per_day": self.queries.ratings_per_day(),
            "turns_per_day": self.queries.turns_per_day(),
            "serving": self.serving(),
            "versions": self.registry.history()[::-1],
            "runs": self.runs(),
            "experiments": self.running_experiments(),
            "drift": self.drift_alerts(),
            "automation": self.automation(),
            "knowledge": self.knowledge.table() if self.knowledge else [],
        })

    def loop(self) -> dict:
        """The loop's counts and its next step; cheap enough to poll."""
        counts = self.queries.loop_counts()
        step = next_step(counts)
        return {"counts": counts, "next": {"stage": step.stage, "sentence": step.sentence,
                                           "action": step.action}}

    def serving(self) -> dict:
        active = self.registry.active()
        if active is None:
            return {"model": "base", "base_model": self.base_model, "adapter": None,
                    "name": self.base_model, "since": None, "metrics": {}}
        promoted = [row for row in self.registry.history()
                    if row["action"] == "promote" and row["model_id"] == active.id]
        return {"model": active.id, "base_model": active.base_model, "adapter": active.id,
                "name": active.name, "since": promoted[-1]["created_at"] if promoted else None,
                "metrics": active.metrics, "dataset_id": active.dataset_id}

    def runs(self) -> dict:
        jobs = self.training.list()
        recent = [{"id": j.id, "name": j.name, "status": j.status, "kind": j.kind,
                   "progress": j.progress, "created_at": j.created_at, "user": j.user_id,
                   "model_id": j.model_id, "error": j.error} for j in jobs[:RECENT]]
        return {"total": len(jobs), "by_status": dict(Counter(j.status for j in jobs)),
                "recent": recent}

    def running_experiments(self) -> list[dict]:
        out = []
        for record in self.experiments.history():
            if record.status != "running":
                continue
            results = self.experiments.results(record.id)
            out.append({**asdict(record), "arms": results["arms"], "p_value": results["p_value"],
                        "recommendation": results["recommendation"]})
        return out

    def drift_alerts(self) -> dict:
        if self.drift is None:
            return {"available": False, "alerts": [], "error": None}
        try:
            report = self.drift.check()
        except RefineryError as error:
            return {"available": True, "alerts": [], "error": error.message}
        return {"available": True, "error": None,
                "alerts": [{"kind": a.kind, "message": a.message, "evidence": a.evidence}
                           for a in report.alerts]}

    def automation(self) -> dict:
        policy = self.retraining.policy()
        _, reason = self.retraining.decide(datetime.now())
        cycles = [{"id": c.id, "created_at": c.created_at, "state": c.state, "reason": c.reason,
                   "model_id": c.model_id, "incumbent": c.incumbent, "error": c.error}
                  for c in self.retraining.cycles(limit=5)]
        return {"enabled": policy.enabled, "follow_up": policy.follow_up, "status": reason,
                "cycles": cycles, "actions": self.retraining.actions(limit=RECENT)}
