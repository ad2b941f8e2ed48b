"""What may reach a /v1 route, decided before any route reads the request body.

Plain ASGI middlewares (`@app.middleware("http")` buffers and streams badly):
- `AuthenticationMiddleware` checks the key from the Authorization header alone. A caller without a
  valid key gets 401 before a single body byte is read, so it cannot make the server spool a huge
  upload to disk or parse huge JSON first; a job's grader token on a route it may not call gets
  403. The principal it finds goes to the routes in `scope["state"]` (service/deps.py reads it).
- `BodySizeLimitMiddleware` caps body bytes: at once from Content-Length, else counted while a
  chunked body streams in; over the cap, 413 and the route is stopped.
Both answer in OpenAI's error shape and close the connection, since the client may still be sending.
"""

from __future__ import annotations

import re
from collections.abc import Callable

from starlette.datastructures import Headers
from starlette.types import ASGIApp, Message, Receive, Scope, Send

from service.auth import KeyRing
from service.errors import AuthenticationFailed, OpenAIError, PermissionDenied, RequestTooLarge

PRINCIPAL = "principal"  # key of the authenticated Principal in scope["state"]
UPLOAD_PATH = "/v1/files"
UPLOAD_PART_PATH = re.compile(r"/v1/uploads/[^/]+/parts")  # a part of a multi-part upload
IMPORT_PATH = "/v1/models/import"  # an adapter zip (service/weights/importer.py)


def grader_token_refused() -> PermissionDenied:
    """The answer to a job's grader token (service/grader_tokens.py) on a route it may not call."""
    return PermissionDenied(
        "A fine-tuning job's grader token may only be used for chat completions.",
        code="insufficient_permissions",
    )


def is_api_path(path: str) -> bool:
    return path == "/v1" or path.startswith("/v1/")


async def reject(error: OpenAIError, scope: Scope, receive: Receive, send: Send) -> None:
    """Answer with `error`; the body, if any, is left unread and the connection closed after it."""
    response = error.to_response()
    response.headers["connection"] = "close"
    await response(scope, receive, send)


class AuthenticationMiddleware:
    def __init__(self, app: ASGIApp, key_ring: Callable[[], KeyRing]) -> None:
        self.app = app
        # A getter: the KeyRing needs the database, which the app's lifespan opens after this is built.
        self.key_ring = key_ring

    async def __call__(self, scope: Scope, receive: Receive, send: Send) -> None:
        if scope["type"] != "http" or not is_api_path(scope["path"]):
            await self.app(scope, receive, send)
            return
        try:
            principal = self.key_ring().authenticate(Headers(scope=scope).get("authorization"))
        except AuthenticationFailed as exc:
            await reject(exc, scope, receive, send)
            return
        if not principal.may_call(scope["method"], scope["path"]):
            await reject(grader_token_refused(), scope, receive, send)
            return
        scope.setdefault("state", {})[PRINCIPAL] = principal
        await self.app(scope, receive, send)


class BodySizeLimitMiddleware:
    """File uploads (POST /v1/files) may send `upload_max_bytes`, parts of an upload (POST
    /v1/uploads/{id}/parts) `part_max_bytes` and adapter imports (POST /v1/models/import)
    `import_max_bytes` (both default: `max_bytes`), every other request `max_bytes`."""

    def __init__(
        self,
        app: ASGIApp,
        upload_max_bytes: int,
        max_bytes: int,
        part_max_bytes: int | None = None,
        import_max_bytes: int | None = None,
    ) -> None:
        self.app = app
        self.upload_max_bytes = upload_max_bytes
        self.max_bytes = max_bytes
        self.part_max_bytes = part_max_bytes or max_bytes
        self.import_max_bytes = import_max_bytes or max_bytes

    def limit_for(self, scope: Scope) -> int:
        if scope["method"] != "POST":
            return self.max_bytes
        if scope["path"] == UPLOAD_PATH:
            return self.upload_max_bytes
        if scope["path"] == IMPORT_PATH:
            return self.import_max_bytes
        return self.part_max_bytes if UPLOAD_PART_PATH.fullmatch(scope["path"]) else self.max_bytes

    async def __call__(self, scope: Scope, receive: Receive, send: Send) -> None:
        if scope["type"] != "http":
            await self.app(scope, receive, send)
            return
        limit = self.limit_for(scope)
        too_large = RequestTooLarge(
            f"The request body is larger than {limit / 2**20:g} MiB, the most this server accepts here."
        )
        declared = Headers(scope=scope).get("content-length")
        if declared is not None and declared.isdigit() and int(declared) > limit:
            await reject(too_large, scope, receive, send)
            return

        received = 0
        rejected = False
        response_started = False

        async def counting_receive() -> Message:
            nonlocal received, rejected
            message = await receive()
            if message["type"] == "http.request":
                received += len(message.get("body", b""))
                if received > limit and not rejected:
                    rejected = True
                    if not response_started:
                        await reject(too_large, scope, receive, send)
                    # Stops the route where it reads; whatever it answers after this is dropped.
                    raise too_large
            return message

        async def send_unless_rejected(message: Message) -> None:
            nonlocal response_started
            if rejected:
                return
            response_started = response_started or message["type"] == "http.response.start"
            await send(message)

        try:
            await self.app(scope, counting_receive, send_unless_rejected)
        except Exception:
            if not rejected:
                raise  # the route's own failure; after a rejection, its errors are the abort's echo
