"""Routes from prompts to adapters: list, add, remove, and preview where a prompt would go."""

from __future__ import annotations

from dataclasses import asdict
from typing import Literal

from fastapi import APIRouter
from pydantic import Field

from api.bodies import Body
from core.services import Services
from core.serving.routing import RouteSpec


class RouteBody(Body):
    model: str = Field(description="id of a registered adapter")
    kind: Literal["rule", "similarity"]
    patterns: list[str] = Field(default_factory=list, description="keywords or regexes (rule)")
    threshold: float = Field(0.5, description="minimum similarity score (similarity)")


class PreviewBody(Body):
    prompt: str


def build_routing_router(services: Services) -> APIRouter:
    router = APIRouter()

    @router.get("/routes")
    def list_routes() -> list[dict]:
        return [asdict(route) for route in services.routing.list()]

    @router.post("/routes")
    def add_route(body: RouteBody) -> dict:
        spec = RouteSpec(model_id=body.model, kind=body.kind, patterns=tuple(body.patterns),
                         threshold=body.threshold)  # compiles the patterns: off the event loop
        return asdict(services.routing.add(spec))

    @router.delete("/routes/{route_id}")
    def delete_route(route_id: str) -> dict:
        services.routing.remove(route_id)
        return {"deleted": route_id}

    @router.post("/routes/preview")
    def preview(body: PreviewBody) -> dict:
        """Where a chat with this prompt would go, with no model chosen and no experiment."""
        route = services.routing.preview(body.prompt)
        return {"model": route.model_id, "reason": route.reason}

    return router
