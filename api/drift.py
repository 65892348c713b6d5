"""GET /drift: the serving model's rating drift and the prompt distribution's drift."""

from __future__ import annotations

from fastapi import APIRouter, Query
from starlette.concurrency import run_in_threadpool

from api.bodies import MAX_INT
from core.services import Services


def build_drift_router(services: Services) -> APIRouter:
    router = APIRouter()

    @router.get("/drift")
    async def drift(
        baseline: int | None = Query(None, ge=0, le=MAX_INT,
                                     description="ratings in the baseline window"),
        window: int | None = Query(None, ge=0, le=MAX_INT,
                                   description="recent ratings under test"),
        prompt_baseline: int | None = Query(None, ge=0, le=MAX_INT),
        prompt_window: int | None = Query(None, ge=0, le=MAX_INT),
        alpha: float | None = None,
    ) -> dict:
        given = {
            "baseline": baseline,
            "window": window,
            "prompt_baseline": prompt_baseline,
            "prompt_window": prompt_window,
            "alpha": alpha,
        }
        overrides = {name: value for name, value in given.items() if value is not None}
        report = await run_in_threadpool(services.drift.check, **overrides)
        return report.to_dict()

    return router
