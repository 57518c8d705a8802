"""Readiness: /readyz and readiness.check, failing and recovering on real services."""

from __future__ import annotations

import asyncio
import time
import uuid
from collections.abc import AsyncIterator

import asyncpg
import httpx
import pytest
from sqlalchemy.engine import make_url

from offerletters import readiness
from offerletters.config import Settings
from offerletters.ledger import Ledger
from offerletters.queue.kafka import ensure_topic
from tests.conftest import MakeSettings
from tests.support.kafka import KafkaBroker
from tests.support.postgres import fresh_database
from tests.support.services import free_port, in_process_api


@pytest.fixture
async def ledger(ledger_url: str) -> AsyncIterator[Ledger]:
    """A started, migrated ledger of this test's own."""
    async with Ledger(ledger_url) as started:
        await started.migrate()
        yield started


async def refuse_connections(url: str, *, refuse: bool) -> None:
    """Make the PostgreSQL database refuse (and drop) connections, or allow them."""
    server = make_url(url)
    admin = await asyncpg.connect(
        host=server.host,
        port=server.port,
        user=server.username,
        password=server.password,
        database="postgres",
    )
    try:
        allow = "false" if refuse else "true"
        await admin.execute(
            f'ALTER DATABASE "{server.database}" WITH ALLOW_CONNECTIONS {allow}'
        )
        if refuse:
            await admin.execute(
                "SELECT pg_terminate_backend(pid) FROM pg_stat_activity"
                " WHERE datname = $1 AND pid <> pg_backend_pid()",
                server.database,
            )
    finally:
        await admin.close()


@pytest.fixture
async def silent_broker() -> AsyncIterator[str]:
    """A TCP port that accepts connections and never says a word."""
    held: list[asyncio.StreamWriter] = []

    async def hold(_reader: asyncio.StreamReader, writer: asyncio.StreamWriter) -> None:
        held.append(writer)

    server = await asyncio.start_server(hold, "127.0.0.1", 0)
    port = server.sockets[0].getsockname()[1]
    try:
        yield f"127.0.0.1:{port}"
    finally:
        for writer in held:
            writer.close()
        server.close()
        await server.wait_closed()


async def test_readyz_answers_ready_in_embedded_mode_without_a_key(
    smtp_settings: Settings,
) -> None:
    """Embedded mode checks only the ledger, and the probe needs no API key."""
    async with in_process_api(smtp_settings, api_key=None) as api:
        response = await api.get("/readyz")

    assert response.status_code == 200
    assert response.json() == {
        "status": "ready",
        "mode": "embedded",
        "checks": ["ledger"],
    }


async def test_probes_arriving_together_share_one_check(
    smtp_settings: Settings, monkeypatch: pytest.MonkeyPatch
) -> None:
    """Many /readyz calls at once run the checks once, so probes cannot flood Kafka."""
    runs = 0
    real_check = readiness.check

    async def slow_check(settings: Settings, ledger: Ledger) -> list[readiness.Problem]:
        nonlocal runs
        runs += 1
        await asyncio.sleep(0.2)
        return await real_check(settings, ledger)

    monkeypatch.setattr(readiness, "check", slow_check)
    async with in_process_api(smtp_settings, api_key=None) as api:
        answers = await asyncio.gather(*(api.get("/readyz") for _ in range(8)))

    assert [a.status_code for a in answers] == [200] * 8
    assert runs == 1


async def test_readyz_fails_while_the_ledger_refuses_and_recovers_after(
    make_settings: MakeSettings, postgres_url: str
) -> None:
    """A PostgreSQL ledger that drops and refuses connections is a 503, then 200."""
    url = fresh_database(postgres_url)
    settings = make_settings(database_url=url)

    async with in_process_api(settings, api_key=None) as api:
        before = await api.get("/readyz")
        await refuse_connections(url, refuse=True)
        try:
            during = await api.get("/readyz")
        finally:
            await refuse_connections(url, refuse=False)
        after = await api.get("/readyz")

    assert before.status_code == 200
    assert during.status_code == 503
    body = during.json()
    assert body["detail"] == "not ready: ledger"
    assert [p["check"] for p in body["problems"]] == ["ledger"]
    assert str(make_url(url).database) not in during.text
    assert str(make_url(url).port) not in during.text
    assert after.status_code == 200


async def test_the_kafka_check_names_a_broker_that_cannot_be_reached(
    make_settings: MakeSettings, ledger: Ledger
) -> None:
    """Nothing listening on the bootstrap port fails only the kafka check."""
    port = free_port()
    settings = make_settings(kafka_bootstrap_servers=f"127.0.0.1:{port}")

    problems = await readiness.check(settings, ledger)

    assert problems == [readiness.Problem("kafka", "no broker could be reached")]


async def test_a_broker_that_never_answers_fails_within_the_timeout(
    make_settings: MakeSettings, ledger: Ledger, silent_broker: str
) -> None:
    """A port that accepts but never answers is reported once the timeout passes."""
    settings = make_settings(kafka_bootstrap_servers=silent_broker)

    started = time.monotonic()
    problems = await readiness.check(settings, ledger, timeout_s=0.5)

    assert time.monotonic() - started < 3
    assert [p.check for p in problems] == ["kafka"]
    assert problems[0].reason == "no answer within 0.5 s"


@pytest.mark.kafka
async def test_the_kafka_check_names_missing_topics_until_they_exist(
    make_settings: MakeSettings, ledger: Ledger, kafka: KafkaBroker
) -> None:
    """A reachable broker without our topics is not ready; once created, it is."""
    topic = f"ready-{uuid.uuid4().hex[:8]}"
    settings = make_settings(
        kafka_bootstrap_servers=kafka.bootstrap_servers,
        kafka_topic=topic,
        kafka_partitions=1,
    )

    missing = await readiness.check(settings, ledger)
    await ensure_topic(settings)
    # A new topic reaches every broker's metadata a moment after it is created.
    async with asyncio.timeout(30):
        while problems := await readiness.check(settings, ledger):
            assert [p.check for p in problems] == ["kafka"]
            await asyncio.sleep(0.2)

    assert missing == [
        readiness.Problem("kafka", f"missing topic(s): {topic}, {topic}.dead")
    ]


@pytest.mark.kafka
async def test_readyz_in_kafka_mode_checks_the_ledger_and_the_broker(
    kafka_settings: Settings,
) -> None:
    """A running API on a real broker answers ready, naming both checks."""
    async with in_process_api(kafka_settings, api_key=None) as api:
        response: httpx.Response = await api.get("/readyz")

    assert response.status_code == 200
    assert response.json() == {
        "status": "ready",
        "mode": "kafka",
        "checks": ["ledger", "kafka"],
    }
