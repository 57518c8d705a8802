"""The HTTP API in embedded mode, delivering to a real SMTP server."""

from __future__ import annotations

import asyncio
from collections.abc import AsyncIterator
from datetime import date
from pathlib import Path

import httpx
import pytest

from offerletters.config import Settings
from tests import rosters
from tests.rosters import Sheet, candidate, roster
from tests.support.services import in_process_api
from tests.support.smtp import SmtpSink

XLSX = "application/vnd.openxmlformats-officedocument.spreadsheetml.sheet"

GOOD_ROWS = [
    candidate("Zoë Müller", "zoe.muller@example.com", "Data Engineer", 120000),
    candidate("李雷", "li.lei@example.org", "Designer", 95000.5, date(2027, 3, 1)),
    candidate(
        "José Álvarez", "jose@example.com", "Analyst", "$88,000", location="Lima"
    ),
]


@pytest.fixture
async def client(smtp_settings: Settings) -> AsyncIterator[httpx.AsyncClient]:
    """The app in embedded mode, delivering to the test SMTP server."""
    async with in_process_api(smtp_settings) as api:
        yield api


def upload(data: bytes, name: str = "x.xlsx") -> dict[str, tuple[str, bytes, str]]:
    return {"file": (name, data, XLSX)}


async def test_an_upload_sends_each_candidate_their_own_letter(
    client: httpx.AsyncClient, smtp: SmtpSink
) -> None:
    """A valid roster answers 202 and every candidate gets one personalised letter."""
    data = rosters.xlsx(Sheet("Roster", roster(*GOOD_ROWS)))

    response = await client.post("/send-emails", files=upload(data))
    await smtp.arrival_of(3)

    assert response.status_code == 202
    assert response.json()["letters"] == 3
    by_recipient = {r.recipients[0]: r.text for r in smtp.received}
    assert "$120,000" in by_recipient["zoe.muller@example.com"]
    assert "Zoë" in by_recipient["zoe.muller@example.com"]
    assert "15 January 2027" in by_recipient["zoe.muller@example.com"]
    assert "$95,000.50" in by_recipient["li.lei@example.org"]
    assert "1 March 2027" in by_recipient["li.lei@example.org"]
    assert "Lima" in by_recipient["jose@example.com"]
    assert "Analyst" in by_recipient["jose@example.com"]


async def test_a_missing_column_is_named_and_nothing_is_sent(
    client: httpx.AsyncClient, smtp: SmtpSink
) -> None:
    """A roster without a Location column gets a 422 that names it."""
    header = ["Name", "Email", "Role", "Offer Amount", "Start Date"]
    rows = [row[:5] for row in GOOD_ROWS]
    data = rosters.xlsx(Sheet("Roster", roster(*rows, header=header)))

    response = await client.post("/send-emails", files=upload(data))

    assert response.status_code == 422
    assert [e["column"] for e in response.json()["errors"]] == ["Location"]
    await asyncio.sleep(0.3)
    assert smtp.received == []


async def test_one_bad_email_rejects_the_batch_with_its_row(
    client: httpx.AsyncClient, smtp: SmtpSink
) -> None:
    """A bad address on sheet row 3 is reported by row and column; nobody is mailed."""
    rows = [GOOD_ROWS[0], candidate(email="not-an-address"), GOOD_ROWS[2]]
    data = rosters.xlsx(Sheet("Roster", roster(*rows)))

    response = await client.post("/send-emails", files=upload(data))

    assert response.status_code == 422
    errors = response.json()["errors"]
    assert [(e["row"], e["column"]) for e in errors] == [(3, "Email")]
    await asyncio.sleep(0.3)
    assert smtp.received == []


@pytest.mark.parametrize(
    ("payload", "name"),
    [
        (b"%PDF-1.7\n%\xe2\xe3\xcf\xd3\n1 0 obj\n<< >>\nendobj\n", "roster.pdf"),
        (b"", "empty.xlsx"),
        (b"PK\x03\x04 damaged zip", "broken.xlsx"),
        (b"%PDF-1.4\n1 0 obj\n<< /Type /Catalog >>\nendobj\n", "text.pdf"),
    ],
)
async def test_a_file_that_is_not_a_spreadsheet_gets_a_clear_4xx(
    client: httpx.AsyncClient, payload: bytes, name: str
) -> None:
    """Junk, empty and damaged uploads are answered 400 with a reason, not a 500."""
    response = await client.post("/send-emails", files=upload(payload, name))

    assert response.status_code == 400
    assert response.json()["detail"].startswith(
        "could not read this file as a spreadsheet"
    )


async def test_without_a_file_the_configured_roster_is_used(
    smtp_settings: Settings, smtp: SmtpSink, tmp_path: Path
) -> None:
    """With no upload, POST /send-emails reads OFFERLETTERS_ROSTER_PATH."""
    path = tmp_path / "configured.xlsx"
    path.write_bytes(rosters.xlsx(Sheet("Roster", roster(*GOOD_ROWS))))
    settings = smtp_settings.model_copy(update={"roster_path": path})

    async with in_process_api(settings) as api:
        response = await api.post("/send-emails")
        await smtp.arrival_of(3)

    assert response.status_code == 202
    assert response.json()["letters"] == 3


async def test_without_a_file_or_a_configured_roster_the_answer_says_how(
    client: httpx.AsyncClient,
) -> None:
    """No file and no roster path is a 400 that names both ways to give one."""
    response = await client.post("/send-emails")

    assert response.status_code == 400
    detail = response.json()["detail"]
    assert detail.startswith("no roster was sent; upload it as the multipart field")
    assert "OFFERLETTERS_ROSTER_PATH" in detail


async def test_health_and_the_openapi_page_document_the_routes(
    client: httpx.AsyncClient,
) -> None:
    """GET /healthz answers ok and the OpenAPI schema lists both routes."""
    health = await client.get("/healthz")
    schema = (await client.get("/openapi.json")).json()

    assert health.json() == {"status": "ok", "mode": "embedded"}
    assert {"/send-emails", "/healthz"} <= schema["paths"].keys()
    assert "422" in schema["paths"]["/send-emails"]["post"]["responses"]
