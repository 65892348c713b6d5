"""Routes for automated retraining: the policy, one check on request, cycles and the action log."""

from __future__ import annotations

from dataclasses import asdict
from datetime import datetime
from typing import Literal

from fastapi import APIRouter, Query, Request

from api.chat import Strict
from api.login import request_user
from core.operations.retraining import RetrainingPolicy
from core.services import Services
from core.store.retraining import CycleRecord


class PolicyBody(Strict):
    """Fields left out keep their current value."""

    enabled: bool | None = None
    min_new_examples: int | None = None
    min_interval_hours: float | None = None
    selection: dict | None = None  # a curation filter, as in GET /curation
    min_rating: int | None = None
    validation_fraction: float | None = None
    training: dict | None = None
    follow_up: Literal["blind", "experiment"] | None = None
    comparison_prompts: int | None = None
    experiment_rated_turns: int | None = None
    experiment_split: float | None = None
    eval_items: int | None = None
    max_new_tokens: int | None = None
    user: str = "anonymous"


class RunBody(Strict):
    user: str = "anonymous"


def cycle_json(services: Services, cycle: CycleRecord) -> dict:
    return {**asdict(cycle), "evidence": services.retraining.evidence(cycle)}


def build_retraining_router(services: Services) -> APIRouter:
    router = APIRouter(prefix="/retraining", tags=["retraining"])
    retraining = services.retraining

    @router.get("/policy")
    def get_policy() -> dict:
        return retraining.policy().to_dict()

    @router.put("/policy")
    def put_policy(body: PolicyBody, http: Request) -> dict:
        changes = body.model_dump(exclude_unset=True, exclude={"user"})
        merged = RetrainingPolicy.from_dict({**retraining.policy().to_dict(), **changes})
        return retraining.set_policy(merged, user=request_user(http, body.user)).to_dict()

    @router.get("/actions")
    def actions(limit: int = Query(50, ge=1, le=1000)) -> list[dict]:
        return retraining.actions(limit=limit)

    @router.get("/cycles")
    def cycles(limit: int = Query(20, ge=1, le=200)) -> list[dict]:
        return [cycle_json(services, cycle) for cycle in retraining.cycles(limit=limit)]

    @router.post("/run")
    def run(http: Request, body: RunBody | None = None) -> dict:  # sync: the cycle in the pool
        user = request_user(http, body.user if body else None)
        outcome = retraining.run_now(datetime.now(), user=user)
        cycle = outcome["cycle"]
        return {**outcome, "cycle": cycle_json(services, cycle) if cycle else None}

    return router
