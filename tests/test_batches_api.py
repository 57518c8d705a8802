"""Batches over HTTP: progress, failed letters and why, retries, no double sends."""

from __future__ import annotations

import asyncio
from collections.abc import AsyncIterator
from typing import Any

import httpx
import pytest

from offerletters.config import Settings
from tests import rosters
from tests.rosters import Sheet, candidate, roster
from tests.support.services import in_process_api
from tests.support.smtp import SmtpSink

ROSTER = rosters.xlsx(
    Sheet(
        "Roster",
        roster(
            candidate("Ana Lima", "ana@example.com"),
            candidate("Bo Chen", "bo@example.com"),
            candidate("Cy Okafor", "cy@example.com"),
        ),
    )
)


@pytest.fixture
async def client(smtp_settings: Settings) -> AsyncIterator[httpx.AsyncClient]:
    """The app in embedded mode; temporary failures get one retry only."""
    settings = smtp_settings.model_copy(update={"smtp_max_attempts": 2})
    async with in_process_api(settings) as api:
        yield api


async def upload(
    client: httpx.AsyncClient, data: bytes = ROSTER, **kwargs: Any
) -> httpx.Response:
    files = {"file": ("roster.xlsx", data, "application/octet-stream")}
    return await client.post("/send-emails", files=files, **kwargs)


async def until_done(client: httpx.AsyncClient, batch_id: str) -> dict[str, Any]:
    """Poll the batch until every letter has an outcome."""
    async with asyncio.timeout(30):
        while True:
            batch: dict[str, Any] = (await client.get(f"/batches/{batch_id}")).json()
            if batch["done"]:
                return batch
            await asyncio.sleep(0.05)


async def test_a_batch_reports_its_progress_until_done(
    client: httpx.AsyncClient, smtp: SmtpSink
) -> None:
    """GET /batches/{id} counts letters per state and says when all are done."""
    batch_id = (await upload(client)).json()["batch_id"]

    batch = await until_done(client, batch_id)

    assert batch["states"] == {"queued": 0, "retrying": 0, "sent": 3, "failed": 0}
    assert batch["published"] is True
    assert len(smtp.received) == 3


async def test_the_same_roster_twice_is_sent_once(
    client: httpx.AsyncClient, smtp: SmtpSink
) -> None:
    """A second upload of the same file answers 200 with the first batch."""
    first = await upload(client)
    await until_done(client, first.json()["batch_id"])

    second = await upload(client)
    await asyncio.sleep(0.3)

    assert first.status_code == 202
    assert second.status_code == 200
    assert second.json()["duplicate"] is True
    assert second.json()["batch_id"] == first.json()["batch_id"]
    assert len(smtp.received) == 3


async def test_a_fresh_idempotency_key_does_not_send_a_known_roster_again(
    client: httpx.AsyncClient, smtp: SmtpSink
) -> None:
    """The roster's content names its batch: a new key alone sends nothing."""
    first = await upload(client, headers={"Idempotency-Key": "hr-q1-click-1"})
    await until_done(client, first.json()["batch_id"])

    again = await upload(client, headers={"Idempotency-Key": "hr-q1-click-2"})

    assert again.status_code == 200
    assert again.json()["batch_id"] == first.json()["batch_id"]
    assert len(smtp.received) == 3


async def test_a_new_batch_retried_with_its_key_is_sent_once(
    client: httpx.AsyncClient, smtp: SmtpSink
) -> None:
    """A deliberate new batch repeated with the same key is that same batch."""
    first = await upload(client)
    await until_done(client, first.json()["batch_id"])
    headers = {"Idempotency-Key": "resend-2027-01"}

    resent = await upload(client, headers=headers, params={"new_batch": "true"})
    await until_done(client, resent.json()["batch_id"])
    retried = await upload(client, headers=headers, params={"new_batch": "true"})

    assert resent.status_code == 202
    assert retried.status_code == 200
    assert retried.json()["batch_id"] == resent.json()["batch_id"]
    assert len(smtp.received) == 6


async def test_new_batch_sends_a_known_roster_again(
    client: httpx.AsyncClient, smtp: SmtpSink
) -> None:
    """?new_batch=true is the explicit way to send the same roster once more."""
    first = await upload(client)
    await until_done(client, first.json()["batch_id"])

    again = await upload(client, params={"new_batch": "true"})
    await until_done(client, again.json()["batch_id"])

    assert again.status_code == 202
    assert again.json()["batch_id"] != first.json()["batch_id"]
    assert len(smtp.received) == 6


async def test_refused_letters_are_listed_with_the_reply_and_can_be_retried(
    client: httpx.AsyncClient, smtp: SmtpSink
) -> None:
    """A 550 fails one letter with the server's words; a retry later delivers it."""
    smtp.refuse("bo@example.com", "550 5.1.1 <bo@example.com>: mailbox unknown")
    batch_id = (await upload(client)).json()["batch_id"]
    batch = await until_done(client, batch_id)

    failed = (await client.get(f"/batches/{batch_id}/letters?state=failed")).json()
    smtp.recorder.refuse.clear()
    retried = (await client.post(f"/batches/{batch_id}/retry")).json()
    after = await until_done(client, batch_id)

    assert batch["states"]["failed"] == 1
    assert [letter["recipient"] for letter in failed] == ["b***@example.com"]
    assert failed[0]["last_reply"] == "550 5.1.1 <b***@example.com>: mailbox unknown"
    assert retried == {"batch_id": batch_id, "requeued": 1, "missing": 0}
    assert after["states"] == {"queued": 0, "retrying": 0, "sent": 3, "failed": 0}
    assert sorted(r.recipients[0] for r in smtp.received) == [
        "ana@example.com",
        "bo@example.com",
        "cy@example.com",
    ]


async def test_an_unknown_batch_is_404(client: httpx.AsyncClient) -> None:
    """Asking about a batch that never existed answers 404, not an empty batch."""
    response = await client.get("/batches/not-a-batch")

    assert response.status_code == 404
