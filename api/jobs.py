"""Routes for the one list of background work: every kind of job in the same shape."""

from __future__ import annotations

from typing import Literal

from fastapi import APIRouter, Query

from core.jobs import KINDS, STATUSES
from core.services import Services


def build_jobs_router(services: Services) -> APIRouter:
    router = APIRouter()
    board = services.jobs

    @router.get("/jobs")
    def list_jobs(kind: Literal[KINDS] | None = None, status: Literal[STATUSES] | None = None,
                  limit: int = Query(200, ge=1, le=1000)) -> dict:
        """Training runs, searches, evaluations, dataset builds and knowledge checks, newest
        first; each kind keeps its own routes for its details and actions."""
        jobs = board.list(kinds=(kind,) if kind else (), statuses=(status,) if status else (),
                          limit=limit)
        return {"items": [job.to_dict() for job in jobs]}

    @router.get("/jobs/{job_id}")
    def get_job(job_id: str) -> dict:
        return board.get(job_id).to_dict()

    @router.post("/jobs/{job_id}/cancel")
    def cancel_job(job_id: str) -> dict:
        """Stop a queued or running job of any kind; 409 for a finished one. Training keeps its
        checkpoint and can resume."""
        return board.cancel(job_id).to_dict()

    return router
