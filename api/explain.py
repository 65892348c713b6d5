"""Routes for attributions (POST /explain), bias reports (POST /fairness) and probes."""

from __future__ import annotations

from typing import Any, Literal

import pandas as pd
from fastapi import APIRouter
from pydantic import Field
from starlette.concurrency import run_in_threadpool

from api.chat import Strict
from core.audit.explain import ExplainSettings
from core.audit.fairness import FairnessSettings
from core.audit.probes import DEFAULT_TEMPLATES, DEFAULT_TERMS, ProbeSpec, run_probes
from core.audit.reports import plain
from core.errors import InvalidInput, NotFound
from core.feedback.classifier import train_feedback_model
from core.services import Services


class ExplainBody(Strict):
    prompt: str | None = None
    answer: str | None = None  # None: each model explains its own greedy answer
    response_id: str | None = None  # a logged turn: its prompt and answer
    models: list[str] = Field(default_factory=lambda: ["base"], min_length=1, max_length=2)
    methods: list[Literal["shap", "lime"]] = Field(default_factory=lambda: ["shap", "lime"])
    max_evals: int = ExplainSettings.max_evals
    batch_size: int = ExplainSettings.batch_size
    max_answer_tokens: int = ExplainSettings.max_answer_tokens
    max_new_tokens: int = Field(64, ge=1, le=512)

    def settings(self) -> ExplainSettings:
        return ExplainSettings(
            methods=tuple(self.methods),
            max_evals=self.max_evals,
            batch_size=self.batch_size,
            max_answer_tokens=self.max_answer_tokens,
        )


class FairnessBody(Strict):
    source: Literal["turns", "rows"] = "turns"
    features: list[str] = Field(min_length=1)
    rows: list[dict[str, Any]] | None = None  # an evaluation set: prompt, reference?, label?
    base_model: str = "base"
    tuned_model: str | None = None  # turns: a value of the 'model' column; rows: a model spec
    n_boot: int = 200
    max_new_tokens: int = Field(64, ge=1, le=512)


class ProbesBody(Strict):
    templates: list[str] = Field(default_factory=lambda: list(DEFAULT_TEMPLATES))
    groups: dict[str, list[str]] = Field(default_factory=lambda: DEFAULT_TERMS["genders"])
    models: list[str] = Field(default_factory=lambda: ["base"], min_length=1, max_length=2)
    reference: str | None = None
    thresholds: dict[str, float] = Field(default_factory=dict)
    max_new_tokens: int = Field(48, ge=1, le=512)


class FeedbackModelBody(Strict):
    response_id: str | None = None  # explain this turn's words too


def explain_request(services: Services, body: ExplainBody) -> dict:
    prompt, answer = body.prompt, body.answer
    if body.response_id:
        turn = services.log.get_turn(body.response_id)
        if turn is None:
            raise NotFound(f"no response with id {body.response_id!r}")
        prompt, answer = turn["prompt"], answer or turn["response"]
    if not prompt or not prompt.strip():
        raise InvalidInput("give a prompt or the response_id of a logged turn")
    settings = body.settings()
    results = []
    for model in body.models:
        own = answer or services.explainer.generate_answer(
            prompt, model=model, max_new_tokens=body.max_new_tokens
        )
        result = services.explainer.explain(prompt, own, model=model, settings=settings)
        results.append(plain(result))
    return {"results": results}


def fairness_request(services: Services, body: FairnessBody) -> dict:
    settings = FairnessSettings(n_boot=body.n_boot)
    if body.source == "turns":
        report = services.fairness.turns_report(
            body.features, tuned_model=body.tuned_model, settings=settings
        )
        return plain(report.to_dict())
    if not body.rows:
        raise InvalidInput("source 'rows' needs the evaluation set's rows")
    report, scored = services.fairness.eval_report(
        pd.DataFrame(body.rows),
        body.features,
        base=body.base_model,
        tuned=body.tuned_model,
        settings=settings,
        max_new_tokens=body.max_new_tokens,
    )
    return plain({**report.to_dict(), "rows": scored})


def build_explain_router(services: Services) -> APIRouter:
    router = APIRouter()

    @router.post("/explain")
    async def explain(body: ExplainBody) -> dict:
        return await run_in_threadpool(explain_request, services, body)

    @router.post("/explain/feedback-model")
    async def feedback_model(body: FeedbackModelBody) -> dict:
        def run() -> dict:
            model = train_feedback_model(services.fairness.turns())
            out = model.summary()
            if body.response_id:
                turn = services.log.get_turn(body.response_id)
                if turn is None:
                    raise NotFound(f"no response with id {body.response_id!r}")
                out["turn"] = model.explain_turn(f"{turn['prompt']} \n {turn['response']}")
            return plain(out)

        return await run_in_threadpool(run)

    @router.post("/fairness")
    async def fairness(body: FairnessBody) -> dict:
        return await run_in_threadpool(fairness_request, services, body)

    @router.post("/fairness/probes")
    async def probes(body: ProbesBody) -> dict:
        def run() -> dict:
            spec = ProbeSpec(
                templates=body.templates,
                groups=body.groups,
                reference=body.reference,
                thresholds=body.thresholds,
                max_new_tokens=body.max_new_tokens,
            )
            targets = [services.explainer.target(m) for m in body.models]
            return plain(run_probes(services.models, targets, spec).to_dict())

        return await run_in_threadpool(run)

    return router
