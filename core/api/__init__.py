"""REST API under /api/v1: thin routes over the core services, one module per concept; and the
OpenAI-compatible API under /v1 (core/api/openai_compat.py)."""

from fastapi import APIRouter, Depends

from core.api.arena import build_arena_router
from core.api.attribution import attributed_to_login
from core.api.chat import build_chat_router
from core.api.curation import build_curation_router
from core.api.dashboard import build_dashboard_router
from core.api.datasets import build_datasets_router
from core.api.documents import build_documents_router
from core.api.drift import build_drift_router
from core.api.errors import install_error_handlers
from core.api.explain import build_explain_router
from core.api.jobs import build_jobs_router
from core.api.knowledge import build_knowledge_router
from core.api.login import api_user
from core.api.openai_compat import build_openai_router
from core.api.retraining import build_retraining_router
from core.api.retrievers import build_retrievers_router
from core.api.routing import build_routing_router
from core.api.training import build_training_router
from core.services import Services

__all__ = ["build_api", "build_openai_router", "install_error_handlers"]


def build_api(services: Services) -> APIRouter:
    # Login (when users are configured) guards every route but /health: HTTP Basic; then no
    # request may act in another user's name.
    router = APIRouter(prefix="/api/v1", dependencies=[Depends(api_user(services.auth)),
                                                        Depends(attributed_to_login)])
    router.include_router(build_chat_router(services))
    router.include_router(build_curation_router(services))
    router.include_router(build_datasets_router(services))
    router.include_router(build_documents_router(services))
    router.include_router(build_arena_router(services))
    router.include_router(build_training_router(services))
    router.include_router(build_retrievers_router(services))
    router.include_router(build_explain_router(services))
    router.include_router(build_drift_router(services))
    router.include_router(build_routing_router(services))
    router.include_router(build_retraining_router(services))
    router.include_router(build_dashboard_router(services))
    router.include_router(build_knowledge_router(services))
    router.include_router(build_jobs_router(services))
    return router
