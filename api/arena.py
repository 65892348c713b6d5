"""Routes for side-by-side comparison, votes, promotion, A/B experiments and evaluations."""

from __future__ import annotations

from dataclasses import asdict
from typing import Literal

from fastapi import APIRouter, Query, Request
from pydantic import Field

from api.bodies import MAX_INT, MAX_QUERY_CHARS
from api.chat import OPTION_FIELDS, Strict, source_json
from api.login import request_user
from core.comparison.arena import CompareRequest
from core.comparison.evaluation import EvalRequest, before_after
from core.comparison.experiments import ExperimentSpec
from core.documents.grounding import SOURCES_K
from core.services import Services
from core.serving.defaults import GenerationDefaults
from core.serving.generation import GenerationOptions
from core.store.arena import ComparisonRecord


class CompareBody(Strict):
    prompt: str
    model_a: str = "base"
    model_b: str
    blind: bool = False
    user: str = "anonymous"
    system_prompt: str | None = None
    max_new_tokens: int | None = None  # None: the served model's defaults
    temperature: float | None = None
    top_p: float | None = None
    repetition_penalty: float = GenerationOptions.repetition_penalty
    repeat_ngram_size: int = GenerationOptions.repeat_ngram_size
    repeat_ngram_limit: int = GenerationOptions.repeat_ngram_limit  # 0: no repetition stop
    use_documents: bool = False
    documents_k: int = SOURCES_K

    def to_request(self, defaults: GenerationDefaults) -> CompareRequest:
        options = defaults.options(**{name: getattr(self, name) for name in OPTION_FIELDS})
        fields = self.model_dump(exclude=set(OPTION_FIELDS))
        return CompareRequest(**fields, options=options)


class VoteBody(Strict):
    comparison_id: str
    vote: Literal["left", "right", "tie", "both_bad"]
    user: str = "anonymous"


class PromoteBody(Strict):
    challenger: str
    incumbent: str = "base"
    user: str = "anonymous"
    alpha: float | None = None
    min_votes: int | None = None


class RollbackBody(Strict):
    user: str = "anonymous"


class ExperimentBody(Strict):
    name: str
    model_a: str = "base"
    model_b: str
    split_b: float = 0.5
    end_rated_turns: int | None = None
    duration_hours: float | None = None
    metric: Literal["thumbs", "stars"] = "thumbs"
    alpha: float = 0.05


class EvalItemBody(Strict):
    id: str | None = None
    prompt: str | None = None
    messages: list[dict] | None = None
    reference: str | None = None
    contexts: list[str] = Field(default_factory=list)


class EvaluationBody(Strict):
    model: str
    dataset_id: str | None = None
    items: list[EvalItemBody] | None = None
    max_new_tokens: int = 64
    limit: int | None = None
    use_documents: bool = False

    def to_request(self) -> EvalRequest:
        rows = None
        if self.items is not None:
            rows = [item.model_dump(exclude_none=True) for item in self.items]
        return EvalRequest(
            model=self.model,
            dataset_id=self.dataset_id,
            rows=rows,
            max_new_tokens=self.max_new_tokens,
            limit=self.limit,
            use_documents=self.use_documents,
        )


def side_json(services: Services, record: ComparisonRecord, side: str, reveal: bool) -> dict:
    turn = services.log.get_turn(getattr(record, f"{side}_interaction_id"))
    return {
        "response_id": turn["id"],
        "text": turn["response"],
        "model": getattr(record, f"{side}_model") if reveal else None,
        "version": getattr(record, f"{side}_version") if reveal else None,
        "latency_ms": round(turn["latency_ms"], 1),
        "ttft_ms": None if turn["ttft_ms"] is None else round(turn["ttft_ms"], 1),
        "tokens": turn["completion_tokens"],
        "tokens_per_s": round(turn["tokens_per_s"], 2),
        "confidence": turn["confidence"],
        "finish_reason": turn["finish_reason"],
    }


def comparison_json(services: Services, record: ComparisonRecord, *, reveal: bool) -> dict:
    """A comparison; in blind mode the model names stay hidden until a vote reveals them."""
    return {
        "comparison_id": record.id,
        "blind": record.blind,
        "prompt": record.prompt,
        "left": side_json(services, record, "left", reveal),
        "right": side_json(services, record, "right", reveal),
    }


def build_arena_router(services: Services) -> APIRouter:
    router = APIRouter()

    @router.post("/compare")
    def compare(body: CompareBody, http: Request) -> dict:  # sync: the whole route in the pool
        body.user = request_user(http, body.user)
        with services.admission.slot():
            update = services.arena.compare(body.to_request(services.defaults.get()))
        record = update.comparison
        return {
            **comparison_json(services, record, reveal=not record.blind),
            "sources": [source_json(hit) for hit in update.sources],  # shared by both sides
        }

    @router.post("/votes")
    def vote(body: VoteBody, http: Request) -> dict:
        voter = request_user(http, body.user)
        record = services.arena.vote(body.comparison_id, body.vote, voter=voter)
        return {**comparison_json(services, record, reveal=True), "vote": body.vote}

    @router.get("/votes/summary")
    def summary(model_a: str = Query(..., max_length=MAX_QUERY_CHARS),
                model_b: str = Query(..., max_length=MAX_QUERY_CHARS)) -> dict:
        return services.arena.summary(model_a, model_b).to_dict()

    @router.get("/votes/leaderboard")
    def leaderboard() -> dict:
        return {
            "ratings": services.arena.leaderboard(),
            "pairs": [pair.to_dict() for pair in services.arena.pairs()],
        }

    @router.get("/promotions/gate")
    def gate(
        challenger: str = Query(..., max_length=MAX_QUERY_CHARS),
        incumbent: str = Query("base", max_length=MAX_QUERY_CHARS),
        alpha: float | None = None,
        min_votes: int | None = Query(None, ge=0, le=MAX_INT),
    ) -> dict:
        result = services.arena.gate(challenger, incumbent, alpha=alpha, min_votes=min_votes)
        return {"allowed": result.allowed, "reason": result.reason, **result.summary.to_dict()}

    @router.post("/promotions")
    def promote(body: PromoteBody, http: Request) -> dict:
        return services.arena.promote(
            body.challenger,
            body.incumbent,
            user=request_user(http, body.user),
            alpha=body.alpha,
            min_votes=body.min_votes,
        )

    @router.post("/promotions/rollback")
    def rollback(body: RollbackBody, http: Request) -> dict:
        return services.arena.rollback(user=request_user(http, body.user))

    @router.get("/promotions")
    def promotions() -> dict:
        return {"items": services.arena.history()}

    @router.post("/ab-tests")
    def create_experiment(body: ExperimentBody) -> dict:
        return asdict(services.experiments.create(ExperimentSpec(**body.model_dump())))

    @router.get("/ab-tests")
    def experiments() -> dict:
        return {"items": [asdict(record) for record in services.experiments.history()]}

    @router.get("/ab-tests/{experiment_id}/results")
    def experiment_results(experiment_id: str) -> dict:
        return services.experiments.results(experiment_id)

    @router.post("/ab-tests/{experiment_id}/stop")
    def stop_experiment(experiment_id: str) -> dict:
        return asdict(services.experiments.stop(experiment_id))

    @router.post("/evaluations")
    def start_evaluation(body: EvaluationBody) -> dict:
        services.admission.check()
        run_id = services.evaluations.start(body.to_request())
        return services.evaluations.get(run_id)

    @router.get("/evaluations")
    def evaluations(ids: str | None = Query(None, max_length=MAX_QUERY_CHARS)) -> dict:
        """Recent runs; with ids=a,b a before/after table of those runs in that order."""
        if ids:
            runs = [services.evaluations.get(run_id) for run_id in ids.split(",") if run_id]
            return {"items": runs, "table": before_after(runs)}
        return {"items": services.evaluations.history()}

    @router.get("/evaluations/{run_id}")
    def evaluation(run_id: str) -> dict:
        return services.evaluations.get(run_id)

    @router.post("/evaluations/{run_id}/cancel")
    def cancel_evaluation(run_id: str) -> dict:
        return services.evaluations.cancel(run_id)

    return router
