"""The worker: a pool of Kafka consumers that deliver letters until told to stop.

One worker process runs several consumer tasks in the same consumer group and
shares one mailer, one ledger and one dead-letter publisher among them, so the
SMTP connection pool and throttle bound the whole process. When told to stop
it stops fetching, finishes the letters it holds, records and commits them,
and returns. With a metrics port it serves /metrics, /healthz (alive while
every consumer runs) and /readyz (alive, and the ledger and Kafka answer).
"""

from __future__ import annotations

import asyncio
import contextlib
import functools
from collections.abc import AsyncIterator, Mapping

import structlog

from offerletters import readiness
from offerletters.config import Settings
from offerletters.delivery import Courier
from offerletters.errors import ConfigError
from offerletters.ledger import Ledger, LetterState
from offerletters.mailer import make_mailer
from offerletters.metrics import Health, MetricsServer
from offerletters.outcomes import OutcomeBook
from offerletters.queue import Handler, Source
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

    health = WorkerHealth(settings)
    async with _serving_probes(settings, health):
        await ensure_topic(settings)
        mailer = make_mailer(settings)
        try:
            async with (
                Ledger(settings.database_url) as ledger,
                OutcomeBook(ledger) as book,
                KafkaDeadLetters(settings) as dead_letters,
            ):
                await ledger.migrate()
                health.ledger = ledger
                courier = Courier(
                    mailer,
                    ledger,
                    book,
                    dead_letters,
                    max_attempts=settings.smtp_max_attempts,
                )
                await _consume(settings, courier, stop, health, where=mailer.where)
        finally:
            await mailer.stop()


class WorkerHealth:
    """What the worker's probes answer, from the consumer tasks it watches.

    Alive (/healthz) while every consumer runs: 503 while starting, once
    stopping, and from the moment one consumer ends on its own, so an
    orchestrator can replace the process. Ready (/readyz) when alive and the
    ledger and Kafka answer (see offerletters.readiness).
    """

    def __init__(self, settings: Settings) -> None:
        self._settings = settings
        self._consumers: dict[str, asyncio.Task[None]] = {}
        self._ended: dict[str, str] = {}
        self._stopping = False
        self.ledger: Ledger | None = None

    def watch(self, consumers: Mapping[str, asyncio.Task[None]]) -> None:
        """Follow these consumer tasks; one ending before a stop makes us unhealthy."""
        self._consumers.update(consumers)
        for name, task in consumers.items():
            task.add_done_callback(functools.partial(self._ended_one, name))

    def stopping(self) -> None:
        """The worker was told to stop (or is stopping after a failure)."""
        self._stopping = True

    async def alive(self) -> Health:
        details: dict[str, object] = {
            "consumers": len(self._consumers),
            "running": sum(not task.done() for task in self._consumers.values()),
        }
        if self._ended:
            return Health(
                False, {"status": "consumer_ended", **details, "ended": self._ended}
            )
        if self._stopping:
            return Health(False, {"status": "stopping", **details})
        if not self._consumers:
            return Health(False, {"status": "starting", **details})
        return Health(True, {"status": "running", **details})

    async def ready(self) -> Health:
        alive = await self.alive()
        if not alive.ok or self.ledger is None:
            return alive

        problems = await readiness.check(self._settings, self.ledger)
        found = [{"check": p.check, "reason": p.reason} for p in problems]
        return Health(not problems, {**alive.details, "problems": found})

    def _ended_one(self, name: str, task: asyncio.Task[None]) -> None:
        """Note a consumer that ended on its own; ending because of a stop is due."""
        if task.cancelled():
            how = "cancelled"
        elif (exc := task.exception()) is not None:
            # The type only: probes are unauthenticated, the log has the rest.
            how = type(exc).__name__
        else:
            how = "returned"

        failed = how not in ("cancelled", "returned")
        if failed or not self._stopping:
            self._ended[name] = how


@contextlib.asynccontextmanager
async def _serving_probes(
    settings: Settings, health: WorkerHealth
) -> AsyncIterator[MetricsServer | None]:
    """Serve /metrics and the probes when a port is configured; else nothing."""
    if settings.worker_metrics_port is None:
        yield None
        return

    probes = {"/healthz": health.alive, "/readyz": health.ready}
    async with MetricsServer(settings.worker_metrics_port, probes) as server:
        yield server


async def _consume(
    settings: Settings,
    courier: Courier,
    stop: asyncio.Event,
    health: WorkerHealth,
    *,
    where: str,
) -> None:
    sources: dict[str, Source] = {
        f"consumer-{n}": KafkaSource(settings, name=f"consumer-{n}")
        for n in range(settings.worker_consumers)
    }
    log.info(
        "worker_started",
        topic=settings.kafka_topic,
        consumers=len(sources),
        mailer=where,
    )

    try:
        await run_consumers(
            sources,
            courier.handle,
            stop,
            grace_s=settings.shutdown_grace_s,
            health=health,
        )
    finally:
        log.info(
            "worker_stopped",
            sent=courier.counts[LetterState.SENT],
            failed=courier.counts[LetterState.FAILED],
        )


async def run_consumers(
    sources: Mapping[str, Source],
    handle: Handler,
    stop: asyncio.Event,
    *,
    grace_s: float,
    health: WorkerHealth,
) -> None:
    """Run every source until `stop` is set or one of them ends; then settle all.

    A source that fails ends the others too, and its error is raised here
    once they have finished the letters they hold.
    """
    tasks = {
        name: asyncio.create_task(source.consume(handle), name=name)
        for name, source in sources.items()
    }
    health.watch(tasks)
    try:
        await _until_stopped_or_failed(stop, set(tasks.values()))
    finally:
        health.stopping()
        for source in sources.values():
            source.stop()
        await _settle(set(tasks.values()), grace_s=grace_s)


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
