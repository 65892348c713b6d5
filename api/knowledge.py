"""Routes for knowledge checks: build, review, import/export, and runs on base or adapters."""

from __future__ import annotations

from typing import Annotated, Literal

from fastapi import APIRouter, File, Form, UploadFile
from fastapi.responses import Response
from pydantic import Field
from starlette.concurrency import run_in_threadpool

from api.bodies import MAX_QUERY_CHARS
from api.chat import Strict
from core.errors import InvalidInput
from core.knowledge.check import MAX_ITEMS, BuildRequest
from core.services import Services

MEDIA = {"jsonl": "application/x-ndjson", "csv": "text/csv"}


class BuildBody(Strict):
    name: str
    document_ids: list[str] = Field(default_factory=list)
    max_items: int = Field(20, ge=1, le=MAX_ITEMS)
    seed: int = 0


class ItemBody(Strict):
    question: str
    reference: str
    chunk_id: str | None = None
    document_id: str | None = None
    source: str | None = None


class ItemChanges(Strict):
    question: str | None = None
    reference: str | None = None


class RunBody(Strict):
    model: str | None = None  # "base" (default) or a registered adapter id
    grounded: list[bool] = Field(default_factory=lambda: [False, True], min_length=1)
    general: bool = False  # also run the general-ability set for this model


def build_knowledge_router(services: Services) -> APIRouter:
    router = APIRouter()
    checks, runs = services.knowledge, services.knowledge_runs

    def with_items(check: dict) -> dict:
        return {**check, "items": checks.items(check["id"])}

    @router.post("/knowledge-checks", status_code=202)
    def build(body: BuildBody) -> dict:
        request = BuildRequest(
            name=body.name, document_ids=tuple(body.document_ids), max_items=body.max_items,
            seed=body.seed,
        )
        check = checks.start_build(request)
        return {"job_id": check["id"], **check}

    @router.get("/knowledge-checks")
    def listing() -> dict:
        return {"items": checks.list()}

    @router.post("/knowledge-checks/import", status_code=201)
    async def import_file(
        file: Annotated[UploadFile, File()],
        name: Annotated[str | None, Form(max_length=MAX_QUERY_CHARS)] = None
    ) -> dict:
        limit = services.settings.max_upload_bytes
        data = await file.read(limit + 1)
        if len(data) > limit:
            raise InvalidInput(f"the file is larger than the upload limit of {limit:,} bytes")
        check = await run_in_threadpool(
            lambda: checks.import_file(data, file.filename or "check.jsonl", name=name or None)
        )
        return with_items(check)

    @router.get("/knowledge-checks/{check_id}")
    def read(check_id: str) -> dict:
        return with_items(checks.get(check_id))

    @router.delete("/knowledge-checks/{check_id}")
    def delete(check_id: str) -> dict:
        checks.delete(check_id)
        return {"deleted": check_id}

    @router.post("/knowledge-checks/{check_id}/items", status_code=201)
    def add_item(check_id: str, body: ItemBody) -> dict:
        return with_items(checks.add_item(check_id, body.model_dump()))

    @router.put("/knowledge-checks/{check_id}/items/{item_id}")
    def update_item(check_id: str, item_id: str, body: ItemChanges) -> dict:
        return with_items(checks.update_item(check_id, item_id, body.model_dump()))

    @router.delete("/knowledge-checks/{check_id}/items/{item_id}")
    def delete_item(check_id: str, item_id: str) -> dict:
        return with_items(checks.delete_item(check_id, item_id))

    @router.get("/knowledge-checks/{check_id}/export")
    def export(check_id: str, format: Literal["jsonl", "csv"] = "jsonl") -> Response:
        text, filename = checks.export(check_id, format)
        return Response(
            text, media_type=MEDIA[format],
            headers={"Content-Disposition": f'attachment; filename="{filename}"'},
        )

    @router.post("/knowledge-checks/{check_id}/runs", status_code=202)
    def start_runs(check_id: str, body: RunBody | None = None) -> dict:
        body = body or RunBody()
        ids = runs.start(
            check_id, model=body.model, grounded=tuple(body.grounded), general=body.general
        )
        return {"run_ids": ids, "runs": [runs.get(run_id) for run_id in ids]}

    @router.get("/knowledge-checks/{check_id}/runs")
    def list_runs(check_id: str) -> dict:
        return {"items": runs.list(check_id)}

    @router.get("/knowledge-runs/{run_id}")
    def read_run(run_id: str) -> dict:
        return runs.get(run_id)

    @router.get("/knowledge-scores")
    def scores() -> dict:
        return {"items": services.knowledge_scores.table()}

    return router
