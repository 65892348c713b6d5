"""REST API under /api/v1: thin routes over the core services, one module per concept; and the
OpenAI-compatible API under /v1 (api/openai_compat.py)."""

from fastapi import APIRouter, Depends

from api.arena import build_arena_router
from api.attribution import attributed_to_login
from api.chat import build_chat_router
from api.curation import build_curation_router
from api.dashboard import build_dashboard_router
from api.datasets import build_datasets_router
from api.documents import build_documents_router
from api.drift import build_drift_router
from api.errors import install_error_handlers
from api.explain import build_explain_router
from api.jobs import build_jobs_router
from api.knowledge import build_knowledge_router
from api.login import api_user
from api.openai_compat import build_openai_router
from api.retraining import build_retraining_router
from api.retrievers import build_retrievers_router
from api.routing import build_routing_router
from api.training import build_training_router
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
