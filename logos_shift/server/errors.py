"""One JSON error shape for every failure: ``{"error", "message", "details"}``."""

from __future__ import annotations

import logging
from typing import Any

from fastapi import FastAPI, Request
from fastapi.exceptions import RequestValidationError
from fastapi.responses import JSONResponse
from starlette.exceptions import HTTPException
from starlette.requests import ClientDisconnect

logger = logging.getLogger("logos_shift.server")

_CODES = {
    400: "bad_request",
    401: "unauthorized",
    403: "forbidden",
    404: "not_found",
    405: "method_not_allowed",
    409: "conflict",
    413: "too_large",
    415: "unsupported_media_type",
    422: "invalid_request",
    429: "rate_limited",
    502: "backend_failed",
    503: "unavailable",
}


class ApiError(Exception):
    """An error answered to the client with a JSON body.

    Args:
        status: HTTP status.
        message: what went wrong and how to fix it.
        code: short machine-readable code (defaults from the status).
        details: optional list of individual problems.
        headers: extra response headers.
    """

    def __init__(
        self,
        status: int,
        message: str,
        code: str | None = None,
        details: list[Any] | None = None,
        headers: dict[str, str] | None = None,
    ) -> None:
        super().__init__(message)
        self.status = status
        self.message = message
        self.code = code or _CODES.get(status, "error")
        self.details = details
        self.headers = headers


def error_response(
    status: int,
    message: str,
    code: str | None = None,
    details: list[Any] | None = None,
    headers: dict[str, str] | None = None,
) -> JSONResponse:
    """Build the JSON error response.

    Args:
        status: HTTP status.
        message: human-readable message.
        code: machine-readable code.
        details: individual problems.
        headers: extra headers.

    Returns:
        The response.
    """
    body: dict[str, Any] = {"error": code or _CODES.get(status, "error"), "message": message}
    if details:
        body["details"] = details
    return JSONResponse(body, status_code=status, headers=headers)


def install(app: FastAPI) -> None:
    """Register the exception handlers on ``app``.

    Args:
        app: the application.
    """

    async def api_error(_request: Request, exc: Exception) -> JSONResponse:
        assert isinstance(exc, ApiError)
        return error_response(exc.status, exc.message, exc.code, exc.details, exc.headers)

    async def validation_error(_request: Request, exc: Exception) -> JSONResponse:
        assert isinstance(exc, RequestValidationError)
        details = [
            {"loc": [str(p) for p in err.get("loc", ())], "msg": str(err.get("msg", ""))}
            for err in exc.errors()[:20]
        ]
        summary = "; ".join(f"{'.'.join(d['loc'])}: {d['msg']}" for d in details[:3])
        return error_response(422, f"invalid request: {summary}", details=details)

    async def http_error(_request: Request, exc: Exception) -> JSONResponse:
        assert isinstance(exc, HTTPException)
        return error_response(
            exc.status_code, str(exc.detail), headers=dict(exc.headers or {}) or None
        )

    async def disconnected(request: Request, _exc: Exception) -> JSONResponse:
        # A client gone mid-body (or cut off at the body deadline): no traceback.
        logger.info("client disconnected", extra={"path": request.url.path})
        return error_response(400, "the client disconnected before sending the whole body")

    async def unexpected(request: Request, exc: Exception) -> JSONResponse:
        logger.error("unhandled error", exc_info=exc, extra={"path": request.url.path})
        return error_response(500, "internal server error", "internal")

    app.add_exception_handler(ApiError, api_error)
    app.add_exception_handler(RequestValidationError, validation_error)
    app.add_exception_handler(HTTPException, http_error)
    app.add_exception_handler(ClientDisconnect, disconnected)
    app.add_exception_handler(Exception, unexpected)
