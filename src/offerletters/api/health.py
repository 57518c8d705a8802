"""The probes: /healthz (the process is alive) and /readyz (it can work now).

Both answer without an API key, for load balancers and orchestrators, and
say nothing a stranger could use: the mode, and which check failed and why.
"""

from __future__ import annotations

import asyncio

from fastapi import APIRouter, Request
from fastapi.responses import JSONResponse

from offerletters import readiness
from offerletters.api.schemas import CheckFailed, Health, NotReady, Ready
from offerletters.config import Settings
from offerletters.ledger import Ledger

router = APIRouter(tags=["probes"])


@router.get("/healthz", response_model=Health, summary="Is the API process alive")
async def healthz(request: Request) -> Health:
    return Health(mode=_mode(request))


@router.get(
    "/readyz",
    response_model=Ready,
    responses={503: {"model": NotReady, "description": "A check failed."}},
    summary="Can the API take uploads now: ledger, and Kafka in Kafka mode",
)
async def readyz(request: Request) -> Ready | JSONResponse:
    services = request.app.state.services
    shared: SharedCheck = request.app.state.readiness
    problems = await shared.run(services.settings, services.ledger)
    if problems:
        failed = ", ".join(problem.check for problem in problems)
        answer = NotReady(
            detail=f"not ready: {failed}",
            problems=[CheckFailed(check=p.check, reason=p.reason) for p in problems],
        )
        return JSONResponse(answer.model_dump(), status_code=503)

    return Ready(mode=_mode(request), checks=readiness.names(services.settings))


class SharedCheck:
    """Readiness checks that callers arriving together share.

    /readyz needs no key, and each check opens a connection to Kafka; with
    one check at a time, a flood of probes never holds more than one such
    connection open.
    """

    def __init__(self) -> None:
        self._running: asyncio.Task[list[readiness.Problem]] | None = None

    async def run(self, settings: Settings, ledger: Ledger) -> list[readiness.Problem]:
        if self._running is None or self._running.done():
            self._running = asyncio.create_task(readiness.check(settings, ledger))
        # Shielded: a caller that hangs up does not cancel the others' answer.
        return await asyncio.shield(self._running)


def _mode(request: Request) -> str:
    return "embedded" if request.app.state.services.settings.embedded else "kafka"
