"""Domain errors, and the one place they become OpenAI's error envelope.

Handlers and domain code raise these; `install_error_handlers` turns them (and FastAPI's request
validation errors, and anything unexpected) into `{"error": {"message", "type", "param", "code"}}`.
Business-rule conflicts are 400, never 409: the openai SDK retries 409.
"""

from __future__ import annotations

import logging
from typing import Any, ClassVar

from fastapi import FastAPI, Request
from fastapi.exceptions import RequestValidationError
from fastapi.responses import JSONResponse
from starlette.exceptions import HTTPException as StarletteHTTPException

from service.protocol.errors import ErrorBody, ErrorResponse

logger = logging.getLogger(__name__)


class OpenAIError(Exception):
    status_code = 400
    type = "invalid_request_error"
    code: str | None = None

    def __init__(self, message: str, *, param: str | None = None, code: str | None = None) -> None:
        super().__init__(message)
        self.message = message
        self.param = param
        if code is not None:
            self.code = code

    headers: ClassVar[dict[str, str]] = {}

    def to_response(self) -> JSONResponse:
        response = error_response(self.status_code, self.message, self.type, self.param, self.code)
        response.headers.update(self.headers)
        return response


class InvalidRequest(OpenAIError):
    status_code = 400


class NotFound(OpenAIError):
    status_code = 404


class AuthenticationFailed(OpenAIError):
    status_code = 401
    code = "invalid_api_key"


class PermissionDenied(OpenAIError):
    status_code = 403


class RequestTooLarge(OpenAIError):
    """A request body over the size cap (service/access.py), refused while it streams in."""

    status_code = 413
    code = "request_too_large"


class EngineUnavailable(OpenAIError):
    """The engine is starting or restarting: a 503 the SDK retries after `retry-after` seconds."""

    status_code = 503
    type = "server_error"
    code = "engine_unavailable"
    headers: ClassVar[dict[str, str]] = {"retry-after": "5"}


# Per-organization limits (issue 9). Both are 429, the status OpenAI uses for limits.
class RateLimited(OpenAIError):
    """Too many requests in flight for one organization: retry after `retry-after` seconds."""

    status_code = 429
    type = "requests"
    code = "rate_limit_exceeded"
    headers: ClassVar[dict[str, str]] = {"retry-after": "1"}


class QuotaExceeded(OpenAIError):
    """An organization's quota (files, stored bytes, active jobs) is used up. Waiting alone does not
    help (delete files, let jobs finish), so the SDK is told not to retry."""

    status_code = 429
    code = "quota_exceeded"
    headers: ClassVar[dict[str, str]] = {"x-should-retry": "false"}


def error_response(
    status_code: int, message: str, type_: str, param: str | None = None, code: str | None = None
) -> JSONResponse:
    body = ErrorResponse(error=ErrorBody(message=message, type=type_, param=param, code=code))
    return JSONResponse(status_code=status_code, content=body.model_dump())


def _param_from_location(loc: tuple[Any, ...]) -> str | None:
    parts = [str(p) for p in loc if p not in ("body", "query", "path", "header", "form")]
    return ".".join(parts) or None


async def _openai_error(_: Request, exc: Exception) -> JSONResponse:
    assert isinstance(exc, OpenAIError)
    return exc.to_response()


async def _validation_error(_: Request, exc: Exception) -> JSONResponse:
    assert isinstance(exc, RequestValidationError)
    first = exc.errors()[0] if exc.errors() else {}
    param = _param_from_location(tuple(first.get("loc", ())))
    message = first.get("msg", "Invalid request")
    if param:
        message = f"Invalid value for '{param}': {message}"
    return error_response(400, message, "invalid_request_error", param, None)


async def _http_error(_: Request, exc: Exception) -> JSONResponse:
    assert isinstance(exc, StarletteHTTPException)
    if exc.status_code == 404:
        return error_response(404, "Not found", "invalid_request_error", None, "not_found")
    if exc.status_code == 405:
        return error_response(405, "Method not allowed", "invalid_request_error", None, None)
    return error_response(exc.status_code, str(exc.detail), "invalid_request_error", None, None)


async def _unexpected_error(_: Request, exc: Exception) -> JSONResponse:
    logger.exception("Unhandled error", exc_info=exc)
    return error_response(500, "The server had an error processing your request.", "server_error")


def install_error_handlers(app: FastAPI) -> None:
    app.add_exception_handler(OpenAIError, _openai_error)
    app.add_exception_handler(RequestValidationError, _validation_error)
    app.add_exception_handler(StarletteHTTPException, _http_error)
    app.add_exception_handler(Exception, _unexpected_error)
