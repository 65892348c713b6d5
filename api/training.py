"""Routes for fine-tuning jobs and the model registry."""

from __future__ import annotations

from typing import Literal

from fastapi import APIRouter, Request
from pydantic import Field

from api.bodies import Body as Strict
from api.login import request_user
from core.services import Services
from core.store.registry import ModelRecord
from core.store.training import JobRecord
from core.training.search import SearchSpec
from core.training.spec import PRESETS

PRESET_NAMES = tuple(PRESETS)


class JobBody(Strict):
    dataset_id: str | None = None
    kind: Literal["sft", "text", "preference"] | None = None
    train: list[dict] | None = None  # rows inline, instead of a dataset id
    validation: list[dict] | None = None
    config: dict = Field(default_factory=dict)  # TrainingSpec options
    preset: Literal[PRESET_NAMES] | None = None
    name: str = ""
    user: str = "anonymous"


class CheckBody(Strict):
    dataset_id: str | None = None
    kind: Literal["sft", "text", "preference"] | None = None
    train: list[dict] | None = None
    config: dict = Field(default_factory=dict)
    preset: Literal[PRESET_NAMES] | None = None


class SearchBody(Strict):
    dataset_id: str | None = None
    kind: Literal["sft", "text"] | None = None
    train: list[dict] | None = None
    validation: list[dict] | None = None
    config: dict = Field(default_factory=dict)  # fixed TrainingSpec options for every trial
    method: Literal["grid", "bayesian"] = "bayesian"
    space: dict[str, list[float]]  # grid: values; bayesian: [low, high]
    trials: int = 8
    seed: int = 0
    user: str = "anonymous"


class RenameBody(Strict):
    name: str


class ExportBody(Strict):
    format: Literal["adapter", "merged", "gguf-f16", "gguf-f32"] = "adapter"


class UserBody(Strict):
    user: str = "anonymous"


def job_json(job: JobRecord) -> dict:
    return {
        "id": job.id, "name": job.name, "status": job.status, "kind": job.kind,
        "dataset_id": job.dataset_id, "dataset_version": job.dataset_version,
        "step": job.step, "total_steps": job.total_steps, "progress": round(job.progress, 4),
        "metrics": job.metrics, "error": job.error, "model_id": job.model_id,
        "created_at": job.created_at.isoformat(),
        "started_at": job.started_at.isoformat() if job.started_at else None,
        "finished_at": job.finished_at.isoformat() if job.finished_at else None,
        "config": job.spec, "user": job.user_id,
    }


def model_json(model: ModelRecord | None, active_id: str | None = None) -> dict | None:
    if model is None:
        return None
    return {
        "id": model.id, "name": model.name, "base_model": model.base_model,
        "adapter_dir": model.adapter_dir, "job_id": model.job_id, "config": model.config,
        "dataset_id": model.dataset_id, "dataset_version": model.dataset_version,
        "metrics": model.metrics, "duration_s": model.duration_s, "lineage": model.lineage,
        "created_at": model.created_at.isoformat(), "promoted": model.id == active_id,
    }


def build_training_router(services: Services) -> APIRouter:
    router = APIRouter()
    runner, registry = services.training, services.registry

    @router.post("/training/jobs", status_code=201)
    def create_job(body: JobBody, http: Request) -> dict:
        spec = runner.make_spec(body.config, dataset_id=body.dataset_id, preset=body.preset)
        job = runner.submit(spec, train=body.train, validation=body.validation, kind=body.kind,
                            name=body.name, user=request_user(http, body.user))
        return job_json(job)

    @router.post("/training/check")
    def check_job(body: CheckBody) -> dict:
        """Rows over the max length (fitted) and rows that could not train, before a run."""
        spec = runner.make_spec(body.config, dataset_id=body.dataset_id, preset=body.preset)
        return runner.check(spec, train=body.train, kind=body.kind)

    @router.get("/training/jobs")
    def list_jobs() -> dict:
        return {"items": [job_json(job) for job in runner.list()]}

    @router.get("/training/jobs/{job_id}")
    def get_job(job_id: str) -> dict:
        return {**job_json(runner.get(job_id)), "history": runner.history(job_id),
                "log": runner.log_tail(job_id)}

    @router.post("/training/jobs/{job_id}/stop")
    def stop_job(job_id: str) -> dict:
        return job_json(runner.stop(job_id))

    @router.post("/training/jobs/{job_id}/resume")
    def resume_job(job_id: str) -> dict:
        return job_json(runner.resume(job_id))

    @router.post("/training/searches", status_code=201)
    def create_search(body: SearchBody, http: Request) -> dict:
        base = runner.make_spec(body.config, dataset_id=body.dataset_id)
        spec = SearchSpec(method=body.method, space=body.space, trials=body.trials,
                          seed=body.seed)
        return services.searches.start(base, spec, train=body.train, validation=body.validation,
                                       kind=body.kind,
                                       user=request_user(http, body.user)).to_dict()

    @router.get("/training/searches")
    def list_searches() -> dict:
        return {"items": [search.to_dict() for search in services.searches.list()]}

    @router.get("/training/searches/{search_id}")
    def get_search(search_id: str) -> dict:
        return services.searches.get(search_id).to_dict()

    @router.post("/training/searches/{search_id}/stop")
    def stop_search(search_id: str) -> dict:
        return services.searches.stop(search_id).to_dict()

    @router.get("/models")
    def list_models() -> dict:
        active = registry.active()
        active_id = active.id if active else None
        return {
            "base_model": services.models.name,
            "promoted": active_id,
            "items": [model_json(m, active_id) for m in registry.list()],
        }

    @router.get("/models/{model_id}")
    def get_model(model_id: str) -> dict:
        active = registry.active()
        return model_json(registry.get(model_id), active.id if active else None)

    @router.post("/models/{model_id}/rename")
    def rename_model(model_id: str, body: RenameBody) -> dict:
        return model_json(registry.rename(model_id, body.name))

    @router.delete("/models/{model_id}")
    def delete_model(model_id: str) -> dict:
        registry.delete(model_id)
        return {"deleted": model_id}

    @router.post("/models/{model_id}/promote")
    def promote_model(model_id: str, http: Request, body: UserBody | None = None) -> dict:
        model = registry.promote(model_id, user=request_user(http, (body or UserBody()).user))
        return {"promoted": model.id}

    @router.post("/models/{model_id}/export")
    def export_model(model_id: str, body: ExportBody) -> dict:
        result = services.model_exports.export(registry.get(model_id), body.format)
        return {"format": result.format, "path": str(result.path), "files": result.files,
                "max_logit_diff": result.max_logit_diff}

    @router.post("/models/rollback")
    def rollback_model(http: Request, body: UserBody | None = None) -> dict:
        active = registry.rollback(user=request_user(http, (body or UserBody()).user))
        return {"promoted": active.id if active else None}

    return router
