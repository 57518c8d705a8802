"""Shared fixtures: a real SMTP server per test, one real Kafka broker per run."""

from __future__ import annotations

import os
import uuid
from collections.abc import Callable, Iterator
from pathlib import Path
from typing import Any

import pytest

from offerletters.config import Settings
from tests.support.kafka import KafkaBroker, provide_broker
from tests.support.postgres import fresh_database, provide_postgres
from tests.support.services import TEST_API_KEY
from tests.support.smtp import SmtpSink, running_sink

REPO = Path(__file__).resolve().parent.parent
# Set to "postgresql" to run every test's ledger on PostgreSQL, not SQLite.
LEDGER_ENV = "OFFERLETTERS_TEST_LEDGER"
SENDER = "Acme Talent <talent@acme.example>"

MakeSettings = Callable[..., Settings]


@pytest.fixture
def smtp() -> Iterator[SmtpSink]:
    """A fresh SMTP server on a free loopback port that records what it accepts."""
    with running_sink() as sink:
        yield sink


@pytest.fixture(scope="session")
def kafka() -> Iterator[KafkaBroker]:
    """One real Kafka broker for the whole run; never skipped when unavailable."""
    with provide_broker() as broker:
        yield broker


@pytest.fixture(scope="session")
def postgres_url() -> Iterator[str]:
    """One PostgreSQL server for the run; never skipped when none is found."""
    with provide_postgres() as url:
        yield url


@pytest.fixture
def ledger_url(request: pytest.FixtureRequest, tmp_path: Path) -> str:
    """A fresh ledger database: SQLite, or PostgreSQL when the run asks for it."""
    if os.environ.get(LEDGER_ENV, "sqlite") == "postgresql":
        return fresh_database(request.getfixturevalue("postgres_url"))

    return f"sqlite+aiosqlite:///{tmp_path / 'ledger.db'}"


@pytest.fixture
def make_settings(tmp_path: Path, ledger_url: str) -> MakeSettings:
    """Settings isolated from the developer's environment and .env file."""

    def make(**overrides: Any) -> Settings:
        values: dict[str, Any] = {
            "outbox_dir": tmp_path / "outbox",
            "database_url": ledger_url,
            "templates_dir": REPO / "templates",
            "sender": SENDER,
            "log_level": "WARNING",
            "shutdown_grace_s": 10.0,
            "api_keys": TEST_API_KEY,
        }
        values.update(overrides)
        return Settings(_env_file=None, **values)  # type: ignore[call-arg]  # pydantic-settings init kwarg

    return make


@pytest.fixture
def smtp_settings(make_settings: MakeSettings, smtp: SmtpSink) -> Settings:
    """Embedded mode delivering to the test SMTP server."""
    return make_settings(smtp_host=smtp.host, smtp_port=smtp.port)


@pytest.fixture
def kafka_settings(
    make_settings: MakeSettings, smtp: SmtpSink, kafka: KafkaBroker
) -> Settings:
    """Kafka mode on a topic and consumer group of this test's own."""
    name = f"offers-{uuid.uuid4().hex[:8]}"
    return make_settings(
        kafka_bootstrap_servers=kafka.bootstrap_servers,
        kafka_topic=name,
        kafka_consumer_group=f"{name}-workers",
        kafka_partitions=4,
        smtp_host=smtp.host,
        smtp_port=smtp.port,
    )
