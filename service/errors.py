"""The service's errors, and the one place they become OpenAI's error envelope.

Every error raised on purpose is a `ServiceError`. Two kinds:
- `OpenAIError` and its subclasses say how the client is answered (status, type, code, headers):
  handlers raise them for what the caller asked wrong (400, 404, 429...).
- Domain errors (engine, adapters, start-up) say what went wrong and carry no HTTP status: the
  engine and start-up code raise them, and `openai_error_for` is where they get one.
`install_error_handlers` turns both (and FastAPI's request validation errors, and anything
unexpected) into `{"error": {"message", "type", "param", "code"}}`. Business-rule conflicts are 400,
never 409: the openai SDK retries 409.
"""

from __future__ import annotations

import logging
from collections.abc import Callable
from typing import Any, ClassVar

from fastapi import FastAPI, Request
from fastapi.exceptions import RequestValidationError
from fastapi.responses import JSONResponse
from starlette.exceptions import HTTPException as StarletteHTTPException

from service.protocol.errors import ErrorBody, ErrorResponse

logger = logging.getLogger(__name__)


class ServiceError(Exception):
    """An error the service raises on purpose (anything else is a bug: a 500, logged)."""


# Domain errors: what went wrong, for logs and for the code that handles them. The messages may
# name server paths and engine URLs, so clients never see them (see `openai_error_for`).
class EngineUnreachable(ServiceError):
    """The engine cannot be reached, or is restarting: worth retrying shortly."""


class EngineRejected(ServiceError):
    """The engine answered an administrative request (load or unload an adapter) with an error."""

    def __init__(self, status_code: int, body: dict[str, Any]) -> None:
        self.status_code = status_code
        self.body = body
        super().__init__(f"engine answered {status_code}: {body}")


class AdapterLoadError(ServiceError):
    """The engine refused to load an adapter; the message says why."""


class ModelUnavailable(ServiceError):
    """A base model's files cannot be found or fetched (a one-line reason, for the operator)."""


class EngineStartError(ServiceError):
    """An engine did not start (or, given by URL, does not answer as it should)."""


class EngineNotReachable(EngineStartError):
    """An engine given by URL is not healthy, or refuses our key, at start-up."""


class OpenAIError(ServiceError):
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


class ServerError(OpenAIError):
    """Something failed that the client can do nothing about (details are in the server's log)."""

    status_code = 500
    type = "server_error"


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


# What clients are told for each domain error. An engine that is away or could not load an adapter
# is worth retrying: 503 with retry-after, which the SDK retries.
_ANSWERS: dict[type[ServiceError], Callable[[ServiceError], OpenAIError]] = {
    EngineUnreachable: lambda _: EngineUnavailable(
        "The model engine is unavailable (starting or restarting); retry shortly."
    ),
    AdapterLoadError: lambda _: EngineUnavailable(
        "The model engine could not load this model's adapter; retry shortly."
    ),
}


def openai_error_for(exc: ServiceError) -> OpenAIError:
    """The answer a client gets for `exc`: itself if it is one, else its entry in `_ANSWERS`
    (the first matching class in its MRO), else a 500 that reveals nothing."""
    if isinstance(exc, OpenAIError):
        return exc
    for kind in type(exc).__mro__:
        answer = _ANSWERS.get(kind)
        if answer is not None:
            return answer(exc)
    return ServerError("The server had an error processing your request.")


def error_response(
    status_code: int, message: str, type_: str, param: str | None = None, code: str | None = None
) -> JSONResponse:
    body = ErrorResponse(error=ErrorBody(message=message, type=type_, param=param, code=code))
    return JSONResponse(status_code=status_code, content=body.model_dump())


def _param_from_location(loc: tuple[Any, ...], body: Any = None) -> str | None:
    """`grader.operation` from pydantic's ("body", "grader", "string_check", "operation"): the
    request part goes, and so does a tagged union's tag (the `type` of the object it is in)."""
    parts: list[str] = []
    current = body
    for step in loc[1:] if loc and loc[0] in ("body", "query", "path", "header", "form") else loc:
        if isinstance(current, dict) and step not in current and step == current.get("type"):
            continue
        parts.append(str(step))
        current = current.get(step) if isinstance(current, dict) else None
    return ".".join(parts) or None


async def _service_error(_: Request, exc: Exception) -> JSONResponse:
    assert isinstance(exc, ServiceError)
    answer = openai_error_for(exc)
    if answer is not exc:
        # A domain error's own message (which may name paths) goes to the log only.
        if isinstance(answer, ServerError):
            logger.error("Unexpected %s", type(exc).__name__, exc_info=exc)
        else:
            logger.warning("%s: %s", type(exc).__name__, exc)
    return answer.to_response()


async def _validation_error(_: Request, exc: Exception) -> JSONResponse:
    assert isinstance(exc, RequestValidationError)
    first = exc.errors()[0] if exc.errors() else {}
    param = _param_from_location(tuple(first.get("loc", ())), exc.body)
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
    app.add_exception_handler(ServiceError, _service_error)
    app.add_exception_handler(RequestValidationError, _validation_error)
    app.add_exception_handler(StarletteHTTPException, _http_error)
    app.add_exception_handler(Exception, _unexpected_error)
