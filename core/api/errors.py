"""Every error leaves the API as JSON {"error", "detail"}: 4xx for bad input, 5xx only for bugs."""

from __future__ import annotations

import logging

from fastapi import FastAPI, Request
from fastapi.exceptions import RequestValidationError
from fastapi.responses import JSONResponse
from starlette.exceptions import HTTPException

from core.errors import (
    Busy,
    Conflict,
    DiskFull,
    Forbidden,
    InvalidInput,
    ModelUnavailable,
    NotFound,
    RefineryError,
    Unauthorized,
    disk_full,
)

STATUS = {
    InvalidInput: 400,
    Unauthorized: 401,
    Forbidden: 403,
    NotFound: 404,
    Conflict: 409,
    Busy: 429,
    ModelUnavailable: 503,
    DiskFull: 507,  # Insufficient Storage: the server's disk, not the request, is at fault
}
CHALLENGE = {"WWW-Authenticate": 'Basic realm="Refinery"'}

log = logging.getLogger("refinery.api")


def error_response(
    status: int, error: str, detail: object = None, headers: dict | None = None
) -> JSONResponse:
    return JSONResponse(
        status_code=status, content={"error": error, "detail": detail}, headers=headers
    )


def _describe(errors: list[dict]) -> list[dict]:
    return [
        {
            "field": ".".join(str(p) for p in e.get("loc", ()) if p != "body"),
            "problem": e.get("msg"),
        }
        for e in errors
    ]


def install_error_handlers(app: FastAPI) -> None:
    @app.exception_handler(RefineryError)
    async def refinery_error(_: Request, error: RefineryError) -> JSONResponse:
        status = next((code for kind, code in STATUS.items() if isinstance(error, kind)), 400)
        headers = CHALLENGE if isinstance(error, Unauthorized) else None
        return error_response(status, error.message, error.detail, headers)

    @app.exception_handler(RequestValidationError)
    async def invalid_request(_: Request, error: RequestValidationError) -> JSONResponse:
        problems = _describe(error.errors())
        if any(e.get("type") == "json_invalid" for e in error.errors()):
            return error_response(400, "the request body is not valid JSON", problems)
        return error_response(422, "the request does not match the expected fields", problems)

    @app.exception_handler(HTTPException)
    async def http_error(_: Request, error: HTTPException) -> JSONResponse:
        return error_response(error.status_code, str(error.detail))

    @app.exception_handler(Exception)
    async def bug(_: Request, error: Exception) -> JSONResponse:
        if full := disk_full(error):  # a file write hit a full disk
            return error_response(STATUS[DiskFull], full.message)
        log.exception("unhandled error")
        return error_response(500, "internal error", type(error).__name__)
