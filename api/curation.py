"""Routes for curating rated turns: filtered pages, bulk actions and quality checks."""

from __future__ import annotations

import json
from typing import Annotated, Literal

import pandas as pd
from fastapi import APIRouter, Query, Request
from pydantic import Field

from api.bodies import FilterBody
from api.chat import Strict
from api.login import request_user
from core.feedback.quality import QualityReport
from core.feedback.ratings import BulkAction
from core.services import Services


class PageQuery(FilterBody):
    page: int = Field(1, ge=1)
    page_size: int = Field(50, ge=1, le=1000)


class QualityQuery(FilterBody):
    field: Literal["rating", "thumb"] = "rating"


class BulkBody(Strict):
    action: str
    tags: list[str] | None = None
    label: str | None = None
    filter: FilterBody = Field(default_factory=FilterBody)
    response_ids: list[str] | None = None  # a selection; narrowed further by `filter`
    user: str = "anonymous"


def records(frame: pd.DataFrame) -> list[dict]:
    return json.loads(frame.to_json(orient="records", date_format="iso"))


def report_json(report: QualityReport) -> dict:
    agreement = report.agreement
    return {
        "rows_checked": report.rows_checked,
        "truncated": report.truncated,
        "agreement": None if agreement is None else agreement.__dict__,
        "checks": [
            {"name": c.name, "summary": c.summary, "rows": records(c.rows)} for c in report.checks
        ],
    }


def build_curation_router(services: Services) -> APIRouter:
    router = APIRouter()

    @router.get("/feedback/rated")
    def rated(query: Annotated[PageQuery, Query()]) -> dict:
        flt = query.to_filter()
        page = services.feedback.page(flt, page=query.page, page_size=query.page_size)
        return {
            "total": page.total,
            "page": page.page,
            "pages": page.pages,
            "items": records(page.rows),
        }

    @router.post("/feedback/bulk")
    def bulk(body: BulkBody, http: Request) -> dict:
        action = BulkAction(action=body.action, tags=body.tags, label=body.label,
                            user=request_user(http, body.user))
        rows = services.feedback.bulk(action, body.filter.to_filter(body.response_ids))
        return {"action": body.action, "rows": rows}

    @router.get("/quality")
    def quality(query: Annotated[QualityQuery, Query()]) -> dict:
        flt = query.to_filter()
        return report_json(services.quality.report(flt, field=query.field))

    return router
