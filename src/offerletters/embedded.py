"""Embedded mode: the queue and the delivery loop inside the calling process.

For a small team or a first try: no Kafka, letters delivered from memory by
the same process that read the roster, recorded in the same ledger as ever.
It says so loudly in the logs, since letters not yet delivered are lost if
the process dies.
"""

from __future__ import annotations

import asyncio
import contextlib
from collections.abc import AsyncIterator
from dataclasses import dataclass

import structlog

from offerletters.config import Settings
from offerletters.delivery import Courier
from offerletters.ledger import Ledger
from offerletters.mailer import make_mailer
from offerletters.outcomes import OutcomeBook
from offerletters.queue.memory import MemoryQueue

log = structlog.get_logger(__name__)


@dataclass(frozen=True, slots=True)
class EmbeddedRun:
    """A running in-process queue, the courier behind it, and where letters go."""

    queue: MemoryQueue
    courier: Courier
    where: str


@contextlib.asynccontextmanager
async def running_embedded(
    settings: Settings, ledger: Ledger
) -> AsyncIterator[EmbeddedRun]:
    """Deliver whatever is published to the queue until the block ends.

    On the way out it waits up to the shutdown grace for queued letters to be
    delivered, then stops the loop and closes the mailer.
    """
    queue = MemoryQueue()
    mailer = make_mailer(settings)
    log.warning(
        "embedded_mode",
        mailer=mailer.where,
        hint="no Kafka configured: queued letters live in this process only;"
        " set OFFERLETTERS_KAFKA_BOOTSTRAP_SERVERS for durable delivery",
    )
    try:
        async with OutcomeBook(ledger) as book:
            courier = Courier(
                mailer, ledger, book, queue, max_attempts=settings.smtp_max_attempts
            )
            delivering = asyncio.create_task(queue.consume(courier.handle))
            try:
                yield EmbeddedRun(queue, courier, mailer.where)
            finally:
                with contextlib.suppress(TimeoutError):
                    await asyncio.wait_for(
                        queue.drained(), timeout=settings.shutdown_grace_s
                    )
                queue.stop()
                await delivering
    finally:
        await mailer.stop()
