"""Every error leaves the API as JSON {"error", "detail"}: 4xx for bad input, 5xx only for bugs.

Under /v1 (the OpenAI-compatible API) the same errors take OpenAI's shape,
{"error": {"message", "type", "param", "code"}}, which its client libraries read."""

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
OPENAI_PREFIX = "/v1/"
OPENAI_TYPES = {
    401: "authentication_error",
    403: "permission_error",
    404: "invalid_request_error",
    429: "rate_limit_error",
}
OPENAI_CODES = {
    400: "invalid_request",
    401: "invalid_api_key",
    403: "forbidden",
    404: "model_not_found",  # the one NotFound a completion can meet
    429: "rate_limit_exceeded",
    503: "model_unavailable",
}

log = logging.getLogger("refinery.api")


def error_response(
    status: int,
    error: str,
    detail: object = None,
    headers: dict | None = None,
    *,
    path: str = "",
) -> JSONResponse:
    if path.startswith(OPENAI_PREFIX):
        return JSONResponse(
            status_code=status, content=openai_error(status, error, detail), headers=headers
        )
    return JSONResponse(
        status_code=status, content={"error": error, "detail": detail}, headers=headers
    )


def openai_error(status: int, error: str, detail: object = None, param: str | None = None) -> dict:
    """One error in OpenAI's shape: the message carries the detail a person acts on."""
    if isinstance(detail, list):  # validation problems: [{field, problem}]
        detail = "; ".join(f"{d['field']}: {d['problem']}" for d in detail)
    message = f"{error}: {detail}" if detail else error
    kind = OPENAI_TYPES.get(status, "server_error" if status >= 500 else "invalid_request_error")
    code = "unsupported_parameter" if param else OPENAI_CODES.get(status, kind)
    return {"error": {"message": message, "type": kind, "param": param, "code": code}}


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
    async def refinery_error(request: Request, error: RefineryError) -> JSONResponse:
        status = next((code for kind, code in STATUS.items() if isinstance(error, kind)), 400)
        headers = CHALLENGE if isinstance(error, Unauthorized) else None
        return error_response(status, error.message, error.detail, headers, path=_path(request))

    @app.exception_handler(RequestValidationError)
    async def invalid_request(request: Request, error: RequestValidationError) -> JSONResponse:
        problems = _describe(error.errors())
        if any(e.get("type") == "json_invalid" for e in error.errors()):
            return error_response(
                400, "the request body is not valid JSON", problems, path=_path(request)
            )
        # OpenAI's clients expect 400 for a request that does not match the API
        status = 400 if _path(request).startswith(OPENAI_PREFIX) else 422
        return error_response(
            status, "the request does not match the expected fields", problems, path=_path(request)
        )

    @app.exception_handler(HTTPException)
    async def http_error(request: Request, error: HTTPException) -> JSONResponse:
        return error_response(error.status_code, str(error.detail), path=_path(request))

    @app.exception_handler(Exception)
    async def bug(request: Request, error: Exception) -> JSONResponse:
        if full := disk_full(error):  # a file write hit a full disk
            return error_response(STATUS[DiskFull], full.message, path=_path(request))
        log.exception("unhandled error")
        return error_response(500, "internal error", type(error).__name__, path=_path(request))


def _path(request: Request) -> str:
    return request.url.path
