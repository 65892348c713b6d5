"""Routes for versioned datasets: build, import, list, read, export, delete."""

from __future__ import annotations

from typing import Annotated, Literal

from fastapi import APIRouter, File, Form, Query, UploadFile
from fastapi.responses import FileResponse, JSONResponse
from pydantic import Field
from starlette.concurrency import run_in_threadpool

from api.bodies import MAX_INT, MAX_QUERY_CHARS, FilterBody
from api.chat import Strict
from core.datasets.augment import Augmentation
from core.datasets.versions import BuildSpec, Dataset, DatasetSummary
from core.errors import InvalidInput
from core.services import Services
from core.training.spec import RECIPES

MEDIA = {"jsonl": "application/x-ndjson", "csv": "text/csv", "parquet": "application/octet-stream"}


class AugmentBody(Strict):
    perturb: int = Field(0, ge=0, le=5)
    synonym: int = Field(0, ge=0, le=5)
    paraphrase: int = Field(0, ge=0, le=5)
    rate: float = Field(0.15, gt=0, le=1)


class DatasetBody(Strict):
    """Build from the curated selection (`filter`, `response_ids`) or documents, or store `rows`."""

    name: str
    kind: Literal["sft", "text", "preference", "embedding"]
    seed: int = 0
    validation_fraction: float = Field(0.1, ge=0, lt=1)
    filter: FilterBody = Field(default_factory=FilterBody)
    response_ids: list[str] | None = None
    min_rating: int = Field(4, ge=1, le=5)
    preference_margin: float = Field(1.0, gt=0)
    max_pairs_per_prompt: int = Field(10, ge=1, le=100)
    hard_negatives: int = Field(3, ge=0, le=20)
    document_ids: list[str] = Field(default_factory=list)
    synthetic_qa: int = Field(0, ge=0, le=1000)
    augmentation: AugmentBody = Field(default_factory=AugmentBody)
    recipe: Literal[RECIPES] | None = None
    written_questions: int = Field(1, ge=0, le=5)
    rows: list[dict] | None = None

    def to_spec(self) -> BuildSpec:
        return BuildSpec(
            name=self.name,
            kind=self.kind,
            selection=self.filter.to_filter(self.response_ids),
            seed=self.seed,
            validation_fraction=self.validation_fraction,
            min_rating=self.min_rating,
            preference_margin=self.preference_margin,
            max_pairs_per_prompt=self.max_pairs_per_prompt,
            hard_negatives=self.hard_negatives,
            document_ids=tuple(self.document_ids),
            synthetic_qa=self.synthetic_qa,
            augmentation=Augmentation(**self.augmentation.model_dump()),
            recipe=self.recipe or "",
            written_questions=self.written_questions,
        )


def summary_json(item: Dataset | DatasetSummary) -> dict:
    counts = (
        (item.train_count, item.validation_count)
        if isinstance(item, DatasetSummary)
        else (len(item.train), len(item.validation))
    )
    return {
        "id": item.id,
        "name": item.name,
        "version": item.version,
        "kind": item.kind,
        "created_at": item.created_at.isoformat(),
        "train_count": counts[0],
        "validation_count": counts[1],
        "stats": item.stats,
    }


def build_datasets_router(services: Services) -> APIRouter:
    router = APIRouter()
    datasets = services.datasets

    @router.post("/datasets", status_code=201)
    def create(body: DatasetBody):
        """Rows the base model writes (QA pairs, paraphrases) make the build a background job:
        202 with the job; follow it at /datasets/jobs/{id}."""
        if body.rows is None and (spec := body.to_spec()).synthetic:
            return JSONResponse(services.dataset_jobs.start(spec).to_dict(), status_code=202)
        if body.rows is not None:
            dataset = datasets.create_from_rows(
                name=body.name,
                kind=body.kind,
                rows=body.rows,
                seed=body.seed,
                validation_fraction=body.validation_fraction,
                augmentation=Augmentation(**body.augmentation.model_dump()),
            )
        else:
            dataset = datasets.build(body.to_spec())
        return {**summary_json(dataset), "lineage": dataset.lineage}

    @router.post("/datasets/import", status_code=201)
    async def import_file(
        file: Annotated[UploadFile, File()],
        name: Annotated[str | None, Form(max_length=MAX_QUERY_CHARS)] = None,
        seed: Annotated[int, Form(ge=-MAX_INT, le=MAX_INT)] = 0,
        validation_fraction: Annotated[float, Form(ge=0, lt=1)] = 0.1,
    ) -> dict:
        limit = services.settings.max_upload_bytes
        data = await file.read(limit + 1)
        if len(data) > limit:
            raise InvalidInput(f"the file is larger than the upload limit of {limit:,} bytes")
        dataset = await run_in_threadpool(
            lambda: datasets.import_file(
                data,
                file.filename or "upload.jsonl",
                name=name or None,
                seed=seed,
                validation_fraction=validation_fraction,
            )
        )
        return {**summary_json(dataset), "lineage": dataset.lineage}

    @router.get("/datasets/jobs")
    def jobs() -> dict:
        return {"items": [job.to_dict() for job in services.dataset_jobs.list()]}

    @router.get("/datasets/jobs/{job_id}")
    def job(job_id: str) -> dict:
        return services.dataset_jobs.get(job_id).to_dict()

    @router.post("/datasets/jobs/{job_id}/cancel")
    def cancel_job(job_id: str) -> dict:
        return services.dataset_jobs.cancel(job_id).to_dict()

    @router.post("/datasets/jobs/{job_id}/resume")
    def resume_job(job_id: str) -> dict:
        return services.dataset_jobs.resume(job_id).to_dict()

    @router.get("/datasets")
    def listing() -> dict:
        return {"items": [summary_json(item) for item in datasets.list()]}

    @router.get("/datasets/{dataset_id}")
    def read(
        dataset_id: str,
        limit: int = Query(100, ge=0, le=10_000),
        offset: int = Query(0, ge=0, le=MAX_INT),
    ) -> dict:
        dataset = datasets.get(dataset_id)
        return {
            **summary_json(dataset),
            "lineage": dataset.lineage,
            "train": dataset.train[offset : offset + limit],
            "validation": dataset.validation[offset : offset + limit],
        }

    @router.get("/datasets/{dataset_id}/export")
    def export(dataset_id: str,
               format: str = Query("jsonl", max_length=MAX_QUERY_CHARS)) -> FileResponse:
        if format not in MEDIA:
            raise InvalidInput(f"format must be one of {', '.join(MEDIA)}, got {format!r}")
        path = datasets.export(dataset_id, format)
        return FileResponse(path, media_type=MEDIA[format], filename=path.name)

    @router.delete("/datasets/{dataset_id}")
    def delete(dataset_id: str) -> dict:
        datasets.delete(dataset_id)
        return {"deleted": dataset_id}

    return router
