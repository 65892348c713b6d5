"""REST API under /api/v1: thin routes over the core services, one module per concept."""

from fastapi import APIRouter

from core.api.chat import build_chat_router
from core.api.errors import install_error_handlers
from core.services import Services

__all__ = ["build_api", "install_error_handlers"]


def build_api(services: Services) -> APIRouter:
    router = APIRouter(prefix="/api/v1")
    router.include_router(build_chat_router(services))
    return router
