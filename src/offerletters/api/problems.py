"""How errors become answers: clear JSON for the caller, details for the log.

The uploader sees what they can act on: why their roster cannot be read, which
rows are wrong, which limit it passed. What only the operator can act on (a
database or broker that cannot be reached, a bug) is answered in general
words with the request id, and logged in full. No answer carries a stack
trace, a secret or a path on the server.
"""

from __future__ import annotations

import os
from pathlib import Path

import structlog
from fastapi import FastAPI, Request
from fastapi.encoders import jsonable_encoder
from fastapi.exceptions import RequestValidationError
from fastapi.responses import JSONResponse

from offerletters.api.middleware import internal_error, request_id_of
from offerletters.api.schemas import RosterRejectedOut, row_error_out
from offerletters.config import Settings
from offerletters.errors import (
    OfferLettersError,
    QueueUnavailable,
    RosterMissing,
    RosterTooLarge,
    RosterUnreadable,
    TemplateProblem,
)
from offerletters.ledger import LedgerUnavailable
from offerletters.roster import RosterRejected

__all__ = ["install"]

log = structlog.get_logger(__name__)

# The caller's mistakes, answered with our message.
_CALLER_STATUS = {
    RosterUnreadable: 400,
    RosterMissing: 400,
    RosterTooLarge: 413,
    TemplateProblem: 422,
}

# Trouble on our side that passes; the message (which names hosts and
# databases) stays in the log.
_UNAVAILABLE = {
    QueueUnavailable: "the letter queue cannot be reached right now; try again shortly",
    LedgerUnavailable: "the ledger cannot be reached right now; try again shortly",
}


def install(app: FastAPI, settings: Settings) -> None:
    """Register the handlers that turn errors into answers."""
    paths = _server_paths(settings)

    async def answer_error(request: Request, exc: OfferLettersError) -> JSONResponse:
        return _answer(request, exc, paths)

    async def answer_invalid(
        request: Request, exc: RequestValidationError
    ) -> JSONResponse:
        return _answer_invalid(exc)

    app.add_exception_handler(OfferLettersError, answer_error)  # type: ignore[arg-type]  # Starlette types handlers loosely
    app.add_exception_handler(RequestValidationError, answer_invalid)  # type: ignore[arg-type]  # Starlette types handlers loosely


def _answer(
    request: Request, exc: OfferLettersError, paths: dict[str, str]
) -> JSONResponse:
    if isinstance(exc, RosterRejected):
        rejected = RosterRejectedOut(
            detail=str(exc), errors=[row_error_out(e) for e in exc.errors]
        )
        return JSONResponse(rejected.model_dump(), status_code=422)

    for kind, status in _CALLER_STATUS.items():
        if isinstance(exc, kind):
            return JSONResponse(
                {"detail": _without_paths(str(exc), paths)}, status_code=status
            )

    request_id = request_id_of(request.scope)
    for kind, message in _UNAVAILABLE.items():
        if isinstance(exc, kind):
            log.warning("request_unavailable", error=str(exc), kind=type(exc).__name__)
            return JSONResponse(
                {"detail": message, "request_id": request_id}, status_code=503
            )

    log.exception("request_failed", exc_info=exc)
    return internal_error(request_id)


def _answer_invalid(exc: RequestValidationError) -> JSONResponse:
    """Say which parameter is wrong and why, without echoing what was sent."""
    errors = [
        {"loc": error["loc"], "msg": error["msg"], "type": error["type"]}
        for error in exc.errors()
    ]
    return JSONResponse({"detail": jsonable_encoder(errors)}, status_code=422)


def _server_paths(settings: Settings) -> dict[str, str]:
    """Folders on the server an error message might name, and what to say instead.

    Only paths with a separator are replaced: a bare relative name such as
    "templates" tells nothing, and replacing it would garble ordinary words.
    """
    named = {
        "the server's templates folder": settings.templates_dir,
        "the configured roster": settings.roster_path,
        "the outbox folder": settings.outbox_dir,
    }
    paths: dict[str, str] = {}
    for words, path in named.items():
        if path is None:
            continue
        for form in (str(path), str(Path(path).resolve())):
            if os.sep in form:
                paths[form] = words
    # Longest first, so a folder is replaced whole before any part of it.
    return dict(sorted(paths.items(), key=lambda item: -len(item[0])))


def _without_paths(message: str, paths: dict[str, str]) -> str:
    for path, words in paths.items():
        message = message.replace(path, words)
    return message
