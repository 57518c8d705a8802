"""The worker: a pool of Kafka consumers that deliver letters until told to stop.

One worker process runs several consumer tasks in the same consumer group and
shares one mailer, one ledger and one dead-letter publisher among them, so the
SMTP connection pool bounds the whole process. When told to stop it stops
fetching, finishes the letters it holds, records and commits them, and
returns.
"""

from __future__ import annotations

import asyncio

import structlog

from offerletters.config import Settings
from offerletters.delivery import Courier
from offerletters.errors import ConfigError
from offerletters.ledger import Ledger, LetterState
from offerletters.mailer import make_mailer
from offerletters.outcomes import OutcomeBook
from offerletters.queue.kafka import KafkaDeadLetters, KafkaSource, ensure_topic

log = structlog.get_logger(__name__)


async def run_worker(settings: Settings, stop: asyncio.Event) -> None:
    """Consume and deliver until `stop` is set."""
    if settings.embedded:
        raise ConfigError(
            "the worker delivers letters from Kafka; set"
            " OFFERLETTERS_KAFKA_BOOTSTRAP_SERVERS (or use `offerletters send`"
            " to deliver a roster in one process without Kafka)"
        )

    await ensure_topic(settings)
    mailer = make_mailer(settings)
    try:
        async with (
            Ledger(settings.database_url) as ledger,
            OutcomeBook(ledger) as book,
            KafkaDeadLetters(settings) as dead_letters,
        ):
            await ledger.migrate()
            courier = Courier(
                mailer,
                ledger,
                book,
                dead_letters,
                max_attempts=settings.smtp_max_attempts,
            )
            await _consume(settings, courier, stop, where=mailer.where)
    finally:
        await mailer.stop()


async def _consume(
    settings: Settings, courier: Courier, stop: asyncio.Event, *, where: str
) -> None:
    sources = [
        KafkaSource(settings, name=f"consumer-{n}")
        for n in range(settings.worker_consumers)
    ]
    log.info(
        "worker_started",
        topic=settings.kafka_topic,
        consumers=len(sources),
        mailer=where,
    )

    tasks = {asyncio.create_task(source.consume(courier.handle)) for source in sources}
    try:
        await _until_stopped_or_failed(stop, tasks)
    finally:
        for source in sources:
            source.stop()
        await _settle(tasks, grace_s=settings.shutdown_grace_s)
        log.info(
            "worker_stopped",
            sent=courier.counts[LetterState.SENT],
            failed=courier.counts[LetterState.FAILED],
        )


async def _until_stopped_or_failed(
    stop: asyncio.Event, tasks: set[asyncio.Task[None]]
) -> None:
    """Wait for a stop; a consumer that dies on its own ends the worker too."""
    stopping = asyncio.create_task(stop.wait())
    try:
        done, _ = await asyncio.wait(
            {stopping, *tasks}, return_when=asyncio.FIRST_COMPLETED
        )
    finally:
        stopping.cancel()

    for task in done & tasks:
        task.result()


async def _settle(tasks: set[asyncio.Task[None]], *, grace_s: float) -> None:
    """Give consumers the grace period to finish their letters, then cancel them."""
    if not tasks:
        return

    _, late = await asyncio.wait(tasks, timeout=grace_s)
    for task in late:
        task.cancel()
    if late:
        log.warning("worker_grace_exceeded", consumers_cancelled=len(late))

    await asyncio.gather(*tasks, return_exceptions=True)
