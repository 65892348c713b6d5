"""Routes for retrievers: fine-tune the embedding model, evaluate, promote and roll back."""

from __future__ import annotations

from fastapi import APIRouter, Request
from pydantic import Field

from api.bodies import Body as Strict
from api.login import request_user
from api.training import job_json
from core.errors import InvalidInput
from core.services import Services
from core.store.registry import RetrieverRecord


class RetrieverJobBody(Strict):
    dataset_id: str | None = None  # an embedding dataset version
    train: list[dict] | None = None  # or rows {query, positive, negatives} inline
    validation: list[dict] | None = None
    config: dict = Field(default_factory=dict)  # TrainingSpec options, e.g. embedding_loss
    name: str = ""
    user: str = "anonymous"


class EvaluateBody(Strict):
    retrievers: list[str] = Field(min_length=1, max_length=10)
    dataset_id: str | None = None  # its validation split holds the held-out queries
    rows: list[dict] | None = None


class UserBody(Strict):
    user: str = "anonymous"


def retriever_json(record: RetrieverRecord, active_id: str) -> dict:
    return {
        "id": record.id, "name": record.name, "base_model": record.base_model,
        "job_id": record.job_id, "dataset_id": record.dataset_id,
        "dataset_version": record.dataset_version, "loss_function": record.loss_function,
        "metrics": record.metrics, "evaluation": record.evaluation,
        "created_at": record.created_at.isoformat(), "serving": record.id == active_id,
    }


def build_retrievers_router(services: Services) -> APIRouter:
    router = APIRouter()
    retrievers = services.retrievers

    @router.get("/retrievers")
    def list_retrievers() -> dict:
        active = retrievers.active().id
        return {"serving": active,
                "items": [retriever_json(r, active) for r in retrievers.list()],
                "history": [{**row, "created_at": row["created_at"].isoformat()}
                            for row in retrievers.history()]}

    def embedding_dataset(dataset_id: str):
        dataset = services.datasets.get(dataset_id)
        if dataset.kind != "embedding":
            raise InvalidInput(f"dataset {dataset_id} is of kind {dataset.kind!r}, "
                               "not 'embedding'")
        return dataset

    @router.post("/retrievers/jobs", status_code=201)
    def create_job(body: RetrieverJobBody, http: Request) -> dict:
        if body.train is None:
            if not body.dataset_id:
                raise InvalidInput("give an embedding dataset_id or train rows")
            embedding_dataset(body.dataset_id)
        spec = retrievers.make_spec(body.config, dataset_id=body.dataset_id)
        job = services.training.submit(
            spec, train=body.train, validation=body.validation,
            kind="embedding" if body.train is not None else None,
            name=body.name or f"retriever · {body.dataset_id or 'rows'}",
            user=request_user(http, body.user))
        return job_json(job)

    @router.post("/retrievers/evaluate")
    def evaluate(body: EvaluateBody) -> dict:
        if (body.dataset_id is None) == (body.rows is None):
            raise InvalidInput("give either a dataset_id or rows")
        rows = body.rows if body.rows is not None else embedding_dataset(body.dataset_id).validation
        return {"results": retrievers.evaluate(body.retrievers, rows)}

    @router.post("/retrievers/rollback")
    def rollback(http: Request, body: UserBody | None = None) -> dict:
        record = retrievers.rollback(user=request_user(http, (body or UserBody()).user))
        return {"serving": record.id}

    @router.get("/retrievers/{retriever_id}")
    def get_retriever(retriever_id: str) -> dict:
        record = retrievers.get(retriever_id)
        return {**retriever_json(record, retrievers.active().id),
                "table": retrievers.evaluation_table(retriever_id)}

    @router.post("/retrievers/{retriever_id}/promote")
    def promote(retriever_id: str, http: Request, body: UserBody | None = None) -> dict:
        record = retrievers.promote(retriever_id,
                                    user=request_user(http, (body or UserBody()).user))
        return {"serving": record.id}

    return router
