"""The API's own description (/openapi.json, /docs, /redoc): behind the login when it is on."""

from __future__ import annotations

from fastapi import Depends, FastAPI
from fastapi.openapi.docs import get_redoc_html, get_swagger_ui_html
from fastapi.responses import HTMLResponse, JSONResponse

from api.login import api_user
from core.operations.auth import Authenticator


def docs_urls(auth: Authenticator) -> dict:
    """FastAPI's keyword arguments: its open documentation routes only when login is off."""
    return {"openapi_url": None, "docs_url": None, "redoc_url": None} if auth.enabled else {}


def install_guarded_docs(app: FastAPI, auth: Authenticator) -> None:
    if not auth.enabled:
        return
    guard = [Depends(api_user(auth))]

    @app.get("/openapi.json", include_in_schema=False, dependencies=guard)
    def openapi() -> JSONResponse:
        return JSONResponse(app.openapi())

    @app.get("/docs", include_in_schema=False, dependencies=guard)
    def docs() -> HTMLResponse:
        return get_swagger_ui_html(openapi_url="/openapi.json", title=f"{app.title} API")

    @app.get("/redoc", include_in_schema=False, dependencies=guard)
    def redoc() -> HTMLResponse:
        return get_redoc_html(openapi_url="/openapi.json", title=f"{app.title} API")
