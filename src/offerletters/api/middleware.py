"""ASGI middleware: a request id and an access log line per request, a last
line of defence against errors, and the upload size cap.

Both are plain ASGI (not BaseHTTPMiddleware), so the request id bound to the
structlog context reaches the route's own log events, and the cap counts
bytes as they arrive instead of after the body has been read.
"""

from __future__ import annotations

import re
import time
import uuid
from typing import Final

import structlog
from fastapi.responses import JSONResponse
from starlette.datastructures import Headers, MutableHeaders
from starlette.exceptions import HTTPException
from starlette.types import ASGIApp, Message, Receive, Scope, Send

from offerletters.api.security import is_public
from offerletters.errors import RosterTooLarge

__all__ = [
    "MULTIPART_ALLOWANCE_BYTES",
    "REQUEST_ID_HEADER",
    "RequestContext",
    "UploadLimit",
    "request_id_of",
]

log = structlog.get_logger(__name__)

REQUEST_ID_HEADER: Final = "X-Request-ID"
DEV_MODE_HEADER: Final = "X-Offerletters-Dev-Mode"
REQUEST_ID_SCOPE_KEY: Final = "offerletters.request_id"
# A caller's request id is kept when it is short and plain, so it can go into
# logs and headers as it is; anything else is replaced by one of ours.
SANE_REQUEST_ID: Final = re.compile(r"[A-Za-z0-9][A-Za-z0-9._:-]{0,127}")

# What a multipart body adds around the roster file: boundaries, part headers
# and a file name. The file itself is capped exactly once it has been read.
MULTIPART_ALLOWANCE_BYTES: Final = 64 * 1024


class RequestContext:
    """Binds a request id, logs `request_done`, and turns a crash into a 500.

    The id comes from the caller's X-Request-ID when it is sane, is bound to
    structlog's context for everything logged while serving the request, and
    is sent back as X-Request-ID. The access line has the method, the path
    (never the query string, never the body), the status and the duration.
    """

    def __init__(self, app: ASGIApp, *, dev_mode: bool) -> None:
        self.app = app
        self._dev_mode = dev_mode

    async def __call__(self, scope: Scope, receive: Receive, send: Send) -> None:
        if scope["type"] != "http":
            await self.app(scope, receive, send)
            return

        request_id = _request_id(scope)
        scope[REQUEST_ID_SCOPE_KEY] = request_id
        status: int | None = None
        started = time.perf_counter()

        async def send_with_id(message: Message) -> None:
            nonlocal status
            if message["type"] == "http.response.start":
                status = message["status"]
                headers = MutableHeaders(scope=message)
                headers.append(REQUEST_ID_HEADER, request_id)
                if self._dev_mode:
                    headers.append(DEV_MODE_HEADER, "true")
            await send(message)

        with structlog.contextvars.bound_contextvars(request_id=request_id):
            try:
                await self.app(scope, receive, send_with_id)
            except Exception:
                # The one place an unexpected error is logged; the caller
                # learns only that it happened and which request it was.
                log.exception("request_failed", method=scope["method"])
                if status is None:
                    answer = internal_error(request_id)
                    await answer(scope, receive, send_with_id)
            finally:
                # Probes arrive every few seconds; their lines would drown the rest.
                emit = log.debug if is_public(scope["path"]) else log.info
                emit(
                    "request_done",
                    request_id=request_id,
                    method=scope["method"],
                    path=scope["path"],
                    status=status,
                    duration_ms=round((time.perf_counter() - started) * 1000, 1),
                )


class UploadTooLarge(HTTPException):
    """The request body passed the cap while it was being read."""

    def __init__(self, max_upload_bytes: int) -> None:
        super().__init__(
            status_code=413, detail=str(RosterTooLarge("bytes", max_upload_bytes))
        )


class UploadLimit:
    """Refuse a body over the cap: at once by its Content-Length, or as it streams.

    A declared length over the cap is answered 413 before the app runs. A
    body sent without one (chunked) is counted as it arrives, and reading
    stops with a 413 the moment the count passes the cap.
    """

    def __init__(self, app: ASGIApp, *, max_upload_bytes: int) -> None:
        self.app = app
        self._max_upload_bytes = max_upload_bytes
        self._max_body_bytes = max_upload_bytes + MULTIPART_ALLOWANCE_BYTES

    async def __call__(self, scope: Scope, receive: Receive, send: Send) -> None:
        if scope["type"] != "http":
            await self.app(scope, receive, send)
            return

        declared = _content_length(scope)
        if declared is not None and declared > self._max_body_bytes:
            log.warning("upload_refused", declared_bytes=declared)
            await self._too_large(scope, receive, send)
            return

        received = 0
        answered = False

        async def counting_receive() -> Message:
            nonlocal received
            message = await receive()
            if message["type"] == "http.request":
                received += len(message.get("body", b""))
                if received > self._max_body_bytes:
                    log.warning("upload_refused", received_bytes=received)
                    raise UploadTooLarge(self._max_upload_bytes)
            return message

        async def watching_send(message: Message) -> None:
            nonlocal answered
            answered = answered or message["type"] == "http.response.start"
            await send(message)

        try:
            await self.app(scope, counting_receive, watching_send)
        except UploadTooLarge:
            # Normally the app's own HTTPException handling answers; this is
            # for a reader outside it, such as a mounted app.
            if answered:
                raise
            await self._too_large(scope, receive, send)

    async def _too_large(self, scope: Scope, receive: Receive, send: Send) -> None:
        problem = UploadTooLarge(self._max_upload_bytes)
        response = JSONResponse({"detail": problem.detail}, status_code=413)
        await response(scope, receive, send)


def request_id_of(scope: Scope) -> str | None:
    """The id RequestContext gave this request."""
    request_id: str | None = scope.get(REQUEST_ID_SCOPE_KEY)
    return request_id


def internal_error(request_id: str | None) -> JSONResponse:
    """The answer to an unexpected error: no message, no trace, just the id."""
    return JSONResponse(
        {"detail": "internal error", "request_id": request_id}, status_code=500
    )


def _request_id(scope: Scope) -> str:
    given = Headers(scope=scope).get(REQUEST_ID_HEADER)
    if given is not None and SANE_REQUEST_ID.fullmatch(given):
        return given
    return uuid.uuid4().hex


def _content_length(scope: Scope) -> int | None:
    value = Headers(scope=scope).get("content-length")
    if value is None:
        return None
    try:
        return int(value)
    except ValueError:
        return None
