"""GET /dashboard: the loop at a glance, as plain JSON; GET /loop: its counts and next step."""

from __future__ import annotations

from fastapi import APIRouter
from starlette.concurrency import run_in_threadpool

from core.services import Services


def build_dashboard_router(services: Services) -> APIRouter:
    router = APIRouter(tags=["dashboard"])

    @router.get("/dashboard")
    async def dashboard() -> dict:
        return await run_in_threadpool(services.dashboard.summary)

    @router.get("/loop")
    async def loop() -> dict:
        return await run_in_threadpool(services.dashboard.loop)

    return router
