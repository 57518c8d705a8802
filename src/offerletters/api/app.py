"""The FastAPI application: built from Settings, with its queue started in the lifespan.

With Kafka configured the app only publishes; workers deliver. In embedded
mode the app also runs the delivery loop in its own event loop, so one process
does everything.
"""

from __future__ import annotations

import contextlib
from collections.abc import AsyncIterator
from dataclasses import dataclass

import structlog
from fastapi import FastAPI, Request
from fastapi.responses import JSONResponse

from offerletters.api import batches
from offerletters.api.routes import router
from offerletters.api.schemas import RosterRejectedOut, row_error_out
from offerletters.config import Settings
from offerletters.embedded import running_embedded
from offerletters.errors import (
    OfferLettersError,
    QueueUnavailable,
    RosterTooLarge,
    RosterUnreadable,
    TemplateProblem,
)
from offerletters.ledger import Ledger, LedgerUnavailable
from offerletters.letters import LetterTemplates
from offerletters.queue import DeadLetterKeeper, Publisher
from offerletters.queue.kafka import KafkaDeadLetters, KafkaPublisher
from offerletters.roster import RosterRejected

log = structlog.get_logger(__name__)


@dataclass(frozen=True, slots=True)
class Services:
    """What the routes need, started once per process."""

    settings: Settings
    templates: LetterTemplates
    publisher: Publisher
    ledger: Ledger
    dead_letters: DeadLetterKeeper


def create_app(settings: Settings) -> FastAPI:
    """Build the app; nothing connects until the server starts it."""
    app = FastAPI(
        title="offerletters",
        summary="Send a personalised offer letter to every candidate in a roster.",
        lifespan=lambda app: _lifespan(app, settings),
    )
    app.include_router(router)
    app.include_router(batches.router)
    app.add_exception_handler(OfferLettersError, _answer_error)  # type: ignore[arg-type]  # Starlette types handlers loosely
    return app


@contextlib.asynccontextmanager
async def _lifespan(app: FastAPI, settings: Settings) -> AsyncIterator[None]:
    templates = LetterTemplates.load(
        settings.templates_dir, locale=settings.locale, currency=settings.currency
    )
    async with Ledger(settings.database_url) as ledger:
        await ledger.migrate()
        if settings.embedded:
            async with running_embedded(settings, ledger) as embedded:
                queue = embedded.queue
                app.state.services = Services(settings, templates, queue, ledger, queue)
                yield
            return

        async with (
            KafkaPublisher(settings) as publisher,
            KafkaDeadLetters(settings) as dead_letters,
        ):
            log.info("api_started", mode="kafka", topic=settings.kafka_topic)
            app.state.services = Services(
                settings, templates, publisher, ledger, dead_letters
            )
            yield


# Which status each of our errors answers with; anything else is a 500.
_STATUS_FOR = {
    RosterUnreadable: 400,
    RosterTooLarge: 413,
    TemplateProblem: 422,
    QueueUnavailable: 503,
    LedgerUnavailable: 503,
}


async def _answer_error(request: Request, exc: OfferLettersError) -> JSONResponse:
    """Our own errors become clear JSON answers, never a stack trace."""
    if isinstance(exc, RosterRejected):
        rejected = RosterRejectedOut(
            detail=str(exc), errors=[row_error_out(e) for e in exc.errors]
        )
        return JSONResponse(rejected.model_dump(), status_code=422)

    status = next((s for t, s in _STATUS_FOR.items() if isinstance(exc, t)), 500)
    if status == 500:
        log.error("request_failed", error=type(exc).__name__)
    return JSONResponse({"detail": str(exc)}, status_code=status)
