"""The FastAPI application: built from Settings, with its queue started in the lifespan.

With Kafka configured the app only publishes; workers deliver. In embedded
mode the app also runs the delivery loop in its own event loop, so one process
does everything. Every route but the probes, /metrics and the OpenAPI page
needs an API key, checked before a request's body is read.
"""

from __future__ import annotations

import contextlib
from collections.abc import AsyncIterator
from dataclasses import dataclass
from typing import Any

import structlog
from fastapi import FastAPI, Security
from prometheus_client import make_asgi_app
from starlette.routing import Route
from starlette.types import ASGIApp, Receive, Scope, Send

from offerletters.api import batches, health, problems
from offerletters.api.middleware import RequestContext, UploadLimit
from offerletters.api.routes import router
from offerletters.api.schemas import Problem
from offerletters.api.security import ApiKeys, RequireApiKey, require_api_key
from offerletters.config import Settings
from offerletters.embedded import running_embedded
from offerletters.ledger import Ledger
from offerletters.letters import LetterTemplates
from offerletters.queue import DeadLetterKeeper, Publisher
from offerletters.queue.kafka import KafkaDeadLetters, KafkaPublisher

log = structlog.get_logger(__name__)

# Documented on every route that needs a key.
UNAUTHORIZED: dict[int | str, dict[str, Any]] = {
    401: {"model": Problem, "description": "No API key was sent, or not a valid one."}
}


@dataclass(frozen=True, slots=True)
class Services:
    """What the routes need, started once per process."""

    settings: Settings
    templates: LetterTemplates
    publisher: Publisher
    ledger: Ledger
    dead_letters: DeadLetterKeeper


def create_app(settings: Settings) -> FastAPI:
    """Build the app; nothing connects until the server starts it.

    Raises ConfigError at once when the API would have no keys and dev mode
    is off, so the command fails before the server starts listening.
    """
    keys = ApiKeys.from_settings(settings)
    app = FastAPI(
        title="offerletters",
        summary="Send a personalised offer letter to every candidate in a roster.",
        lifespan=lambda app: _lifespan(app, settings),
    )
    protected = [Security(require_api_key)]
    app.include_router(health.router)
    app.include_router(router, dependencies=protected, responses=UNAUTHORIZED)
    app.include_router(batches.router, dependencies=protected, responses=UNAUTHORIZED)
    app.router.routes.append(
        Route(
            "/metrics",
            _AsgiEndpoint(make_asgi_app()),
            methods=["GET"],
            include_in_schema=False,
        )
    )
    app.state.readiness = health.SharedCheck()
    problems.install(app, settings)

    # Added innermost first. A request meets the request id (and the last
    # resort for errors) first, then the key check, then the upload cap: so
    # nothing of a body is read before its key is known good.
    app.add_middleware(UploadLimit, max_upload_bytes=settings.max_upload_bytes)
    app.add_middleware(RequireApiKey, keys=keys)
    app.add_middleware(RequestContext, dev_mode=settings.dev_mode)
    return app


class _AsgiEndpoint:
    """An ASGI app that Starlette routes to as an app, not a request handler.

    prometheus_client's app is a plain function, which a Route would call
    with a Request; mounted instead, it would answer /metrics only with a
    redirect to /metrics/.
    """

    def __init__(self, app: ASGIApp) -> None:
        self._app = app

    async def __call__(self, scope: Scope, receive: Receive, send: Send) -> None:
        await self._app(scope, receive, send)


@contextlib.asynccontextmanager
async def _lifespan(app: FastAPI, settings: Settings) -> AsyncIterator[None]:
    if settings.dev_mode:
        log.warning(
            "auth_disabled",
            setting="OFFERLETTERS_DEV_MODE",
            effect="every route answers without an API key",
            fix="never run like this where others can reach the port;"
            " set OFFERLETTERS_API_KEYS and turn dev mode off",
        )

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
