"""The worker's probes: alive while every consumer runs, 503 once one has died."""

from __future__ import annotations

import asyncio
import socket
from collections.abc import Sequence

import httpx
import pytest

from offerletters.config import Settings
from offerletters.letters import Letter
from offerletters.metrics import MetricsServer
from offerletters.queue import Handler
from offerletters.queue.kafka import KafkaPublisher
from offerletters.worker import WorkerHealth, run_consumers, run_worker
from tests.conftest import MakeSettings
from tests.support.smtp import SmtpSink
from tests.test_mailer import make_letter

WAIT_S = 30.0


class HeldSource:
    """A consumer that runs until stopped or told to die, then finishes when let."""

    def __init__(self) -> None:
        self.started = asyncio.Event()
        self.let_finish = asyncio.Event()
        self._stopped = asyncio.Event()
        self._dies = asyncio.Event()

    async def consume(self, handle: Handler) -> None:
        self.started.set()
        ends = [asyncio.create_task(e.wait()) for e in (self._stopped, self._dies)]
        await asyncio.wait(ends, return_when=asyncio.FIRST_COMPLETED)
        for end in ends:
            end.cancel()
        if self._dies.is_set():
            raise ConnectionError("the broker went away")

        await self.let_finish.wait()

    def stop(self) -> None:
        self._stopped.set()

    def die(self) -> None:
        self._dies.set()


async def no_letters(letters: Sequence[Letter]) -> None:
    return None


async def status_of(http: httpx.AsyncClient, path: str) -> tuple[int, str]:
    answer = await http.get(path)
    return answer.status_code, answer.json()["status"]


async def until_status(
    http: httpx.AsyncClient, path: str, wanted: tuple[int, str]
) -> None:
    """Ask until the probe gives the wanted answer; fail after WAIT_S."""
    async with asyncio.timeout(WAIT_S):
        while True:
            if await status_of(http, path) == wanted:
                return
            await asyncio.sleep(0.05)


async def test_healthz_turns_503_when_a_consumer_dies_while_others_finish(
    settings: Settings,
) -> None:
    """Starting is 503, running is 200, and a consumer that dies makes it 503 at
    once, while the other consumer still finishes its letters; then the worker
    raises the consumer's error."""
    health = WorkerHealth(settings)
    steady, doomed = HeldSource(), HeldSource()
    stop = asyncio.Event()
    async with (
        MetricsServer(0, {"/healthz": health.alive}, host="127.0.0.1") as server,
        httpx.AsyncClient(base_url=f"http://127.0.0.1:{server.port}") as http,
    ):
        starting = await status_of(http, "/healthz")
        consuming = asyncio.create_task(
            run_consumers(
                {"consumer-0": steady, "consumer-1": doomed},
                no_letters,
                stop,
                grace_s=WAIT_S,
                health=health,
            )
        )
        await asyncio.gather(steady.started.wait(), doomed.started.wait())
        running = await status_of(http, "/healthz")

        doomed.die()
        await until_status(http, "/healthz", (503, "consumer_ended"))
        details = (await http.get("/healthz")).json()
        still_finishing = not consuming.done()
        steady.let_finish.set()
        with pytest.raises(ConnectionError):
            await consuming

    assert starting == (503, "starting")
    assert running == (200, "running")
    assert still_finishing
    assert details["ended"] == {"consumer-1": "ConnectionError"}
    assert details["consumers"] == 2


async def test_healthz_is_503_while_stopping_on_request(settings: Settings) -> None:
    """After a stop is asked for, the probe says stopping (503), not failed."""
    health = WorkerHealth(settings)
    source = HeldSource()
    stop = asyncio.Event()
    async with (
        MetricsServer(0, {"/healthz": health.alive}, host="127.0.0.1") as server,
        httpx.AsyncClient(base_url=f"http://127.0.0.1:{server.port}") as http,
    ):
        consuming = asyncio.create_task(
            run_consumers(
                {"consumer-0": source}, no_letters, stop, grace_s=WAIT_S, health=health
            )
        )
        await source.started.wait()
        stop.set()
        await until_status(http, "/healthz", (503, "stopping"))
        source.let_finish.set()
        await consuming
        stopped = await status_of(http, "/healthz")

    assert stopped == (503, "stopping")


@pytest.fixture
def settings(make_settings: MakeSettings) -> Settings:
    return make_settings()


def free_port() -> int:
    with socket.socket() as probe:
        probe.bind(("127.0.0.1", 0))
        return int(probe.getsockname()[1])


@pytest.mark.kafka
async def test_a_running_worker_serves_metrics_healthz_and_readyz(
    kafka_settings: Settings, smtp: SmtpSink
) -> None:
    """A worker with a metrics port is alive and ready while it delivers, and its
    /metrics counts the letters it sent."""
    settings = kafka_settings.model_copy(update={"worker_metrics_port": free_port()})
    async with KafkaPublisher(settings) as publisher, publisher.batch() as writer:
        for row in range(1, 6):
            await writer.put(make_letter(row))

    stop = asyncio.Event()
    worker = asyncio.create_task(run_worker(settings, stop))
    try:
        async with httpx.AsyncClient(
            base_url=f"http://127.0.0.1:{settings.worker_metrics_port}"
        ) as http:
            await smtp.arrival_of(5)
            await until_status(http, "/healthz", (200, "running"))
            ready = await http.get("/readyz")
            metrics = await http.get("/metrics")
    finally:
        stop.set()
        await asyncio.wait_for(worker, timeout=WAIT_S)

    assert ready.status_code == 200
    assert ready.json()["problems"] == []
    sent = [
        line
        for line in metrics.text.splitlines()
        if line.startswith("offerletters_letters_sent_total ")
    ]
    assert sent
    assert float(sent[0].split()[1]) >= 5
