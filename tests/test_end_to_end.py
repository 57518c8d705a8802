"""The whole service as users run it: API and two workers, real Kafka, real SMTP."""

from __future__ import annotations

import time
from collections import Counter
from collections.abc import Iterator
from datetime import date, timedelta
from decimal import Decimal
from pathlib import Path

import httpx
import pytest

from offerletters.config import Settings
from tests import rosters
from tests.rosters import Sheet, candidate, roster
from tests.support.services import (
    AUTH,
    Service,
    free_port,
    settings_env,
    start,
    wait_until_healthy,
)
from tests.support.smtp import SmtpSink

pytestmark = pytest.mark.kafka

CANDIDATES = 200
ROLES = ["Data Engineer", "Product Designer", "Account Executive", "Nurse"]
CITIES = ["Berlin", "São Paulo", "Osaka", "Nairobi", "Toronto"]


def expected_candidates() -> list[dict[str, object]]:
    """Distinct, checkable details for every candidate of the test roster."""
    return [
        {
            "name": f"Candidate Nº{n} Ünal",
            "email": f"candidate.{n}@example.com",
            "role": ROLES[n % len(ROLES)],
            "amount": 60_000 + n * 250,
            "start": date(2027, 1, 4) + timedelta(days=n % 60),
            "location": CITIES[n % len(CITIES)],
        }
        for n in range(1, CANDIDATES + 1)
    ]


@pytest.fixture
def workers(kafka_settings: Settings, tmp_path: Path) -> Iterator[list[Service]]:
    """Two worker processes in one consumer group, both holding partitions."""
    env = settings_env(kafka_settings, OFFERLETTERS_LOG_LEVEL="INFO")
    started = [start(f"worker-{n}", ["worker"], env, tmp_path) for n in (1, 2)]
    try:
        wait_until_all_assigned(started)
        yield started
    finally:
        for worker in started:
            worker.kill()


@pytest.fixture
def api_url(kafka_settings: Settings, tmp_path: Path) -> Iterator[str]:
    port = free_port()
    env = settings_env(kafka_settings)
    api = start("api", ["api", "--port", str(port)], env, tmp_path)
    url = f"http://127.0.0.1:{port}"
    try:
        wait_until_healthy(api, f"{url}/healthz")
        yield url
    finally:
        api.terminate()


def wait_until_all_assigned(workers: list[Service], timeout_s: float = 90) -> None:
    """Both workers have joined the group and been given partitions."""
    deadline = time.monotonic() + timeout_s
    while time.monotonic() < deadline:
        if all(
            any(e["partitions"] for e in w.events("partitions_assigned"))
            for w in workers
        ):
            return
        time.sleep(0.2)
    raise TimeoutError("workers never got partitions")


def test_an_upload_reaches_every_candidate_once_through_two_workers(
    workers: list[Service], api_url: str, smtp: SmtpSink
) -> None:
    """200 candidates uploaded over HTTP each get exactly one letter of their own."""
    people = expected_candidates()
    rows = [
        candidate(
            str(p["name"]),
            str(p["email"]),
            str(p["role"]),
            int(str(p["amount"])),
            p["start"],  # type: ignore[arg-type]  # a date from the table above
            str(p["location"]),
        )
        for p in people
    ]
    data = rosters.xlsx(Sheet("Hires", roster(*rows)))

    response = httpx.post(
        f"{api_url}/send-emails",
        files={"file": ("hires.xlsx", data, "application/octet-stream")},
        headers=AUTH,
        timeout=60,
    )
    smtp.wait_for(CANDIDATES, timeout_s=120)
    time.sleep(1)  # a duplicate, were there one, would arrive now
    exit_codes = [worker.terminate() for worker in workers]

    assert response.status_code == 202, response.text
    assert response.json()["letters"] == CANDIDATES
    received = Counter(r.recipients[0] for r in smtp.received)
    assert received == Counter(str(p["email"]) for p in people)
    letters = {r.recipients[0]: r for r in smtp.received}
    for person in people:
        letter = letters[str(person["email"])]
        text = letter.text
        assert letter.message["To"].addresses[0].display_name == person["name"]
        assert f"Dear {str(person['name']).split()[0]}," in text
        assert str(person["role"]) in text
        assert f"${Decimal(str(person['amount'])):,}" in text
        start_day: date = person["start"]  # type: ignore[assignment]
        assert f"{start_day.day} {start_day:%B %Y}" in text
        assert str(person["location"]) in text
    assert exit_codes == [0, 0]
    sent_events = [list(w.events("letter_sent")) for w in workers]
    assert all(
        {"partition", "offsets", "letter_id"} <= event.keys()
        for events in sent_events
        for event in events
    )
    sent_by = [len(events) for events in sent_events]
    assert all(sent_by), f"each worker should deliver some letters: {sent_by}"
    assert sum(sent_by) == CANDIDATES
