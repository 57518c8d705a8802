"""A roster as HR really sends one, tried as a new user would: CLI and API."""

from __future__ import annotations

import email
import email.policy
from collections.abc import AsyncIterator
from datetime import date
from pathlib import Path

import httpx
import pytest

from offerletters.config import Settings
from tests import rosters
from tests.conftest import MakeSettings
from tests.rosters import Sheet
from tests.support.services import in_process_api, run_cli, settings_env
from tests.support.smtp import SmtpSink

# Excel counts days from 30 December 1899 in the 1900 date system.
EXCEL_EPOCH = date(1899, 12, 30)
JAN_15_SERIAL = (date(2027, 1, 15) - EXCEL_EPOCH).days

MESSY: list[list[rosters.Value]] = [
    ["Acme Corp: new hires, first quarter 2027"],
    [],
    [
        "Full Name",
        "E-mail",
        "Job Title",
        "Salary (USD)",
        "Joining Date",
        "City",
        "Hiring Manager",
    ],
    [
        "  Zoë Müller ",
        "Zoe.Muller@Example.com",
        "Data Engineer",
        "$120,000",
        JAN_15_SERIAL,
        "Berlin",
        "Ana Lima",
    ],
    [
        "李雷",
        "li.lei@example.org",
        "Designer",
        "USD 95,000.50",
        "15/03/2027",
        "Shanghai\nPudong",
        "Ana Lima",
    ],
    ["Broken Email", "nobody@", "Analyst", 70000, date(2027, 2, 1), "Oslo", "Ana Lima"],
    [
        "Broken Amount",
        "amount@example.com",
        "Analyst",
        "lots",
        date(2027, 2, 1),
        "Oslo",
        "Ana Lima",
    ],
    [
        "Broken Date",
        "when@example.com",
        "Analyst",
        70000,
        "someday",
        "Oslo",
        "Ana Lima",
    ],
    [
        "José Álvarez",
        "jose@example.com",
        "Analyst",
        88000,
        date(2027, 2, 1),
        "Lima",
        "Ana Lima",
    ],
]
MESSY_XLSX = rosters.xlsx(Sheet("Q1 hires", MESSY))

# What each good row must read like, and which broken row fails on which column.
EXPECTED_LETTERS = {
    # The domain is normalised; the mailbox keeps its case, as RFC 5321 asks.
    "Zoe.Muller@example.com": ["Dear Zoë,", "$120,000 ", "15 January 2027", "Berlin"],
    "li.lei@example.org": [
        "Dear 李雷,",
        "$95,000.50",
        "15 March 2027",
        "Shanghai Pudong",
    ],
    "jose@example.com": ["Dear José,", "$88,000 ", "1 February 2027", "Lima"],
}
EXPECTED_ERRORS = [(6, "E-mail"), (7, "Salary (USD)"), (8, "Joining Date")]


@pytest.fixture
def messy_roster(tmp_path: Path) -> Path:
    path = tmp_path / "hires.xlsx"
    path.write_bytes(MESSY_XLSX)
    return path


def test_preview_on_the_cli_writes_the_good_letters_and_lists_the_bad_rows(
    make_settings: MakeSettings, messy_roster: Path, tmp_path: Path
) -> None:
    """`preview` renders the three good rows exactly and names each broken row."""
    result = run_cli(
        ["preview", str(messy_roster)], settings_env(make_settings()), tmp_path
    )

    assert result.returncode == 1
    assert "Traceback" not in result.stderr
    for row, column in EXPECTED_ERRORS:
        assert f"row {row}, {column}:" in result.stdout
    letters = {}
    for path in (tmp_path / "preview").glob("*.eml"):
        message = email.message_from_bytes(path.read_bytes(), policy=email.policy.SMTP)
        body = message.get_body(preferencelist=("plain",))
        assert body is not None
        letters[message["To"].addresses[0].addr_spec] = body.get_content()
    assert letters.keys() == EXPECTED_LETTERS.keys()
    for recipient, phrases in EXPECTED_LETTERS.items():
        for phrase in phrases:
            assert phrase in letters[recipient], (recipient, phrase)


@pytest.fixture
async def client(smtp_settings: Settings) -> AsyncIterator[httpx.AsyncClient]:
    """The app in embedded mode, delivering to the test SMTP server."""
    async with in_process_api(smtp_settings) as api:
        yield api


async def test_preview_over_http_shows_letters_and_errors_and_sends_nothing(
    client: httpx.AsyncClient,
) -> None:
    """POST /preview answers the good rows' letters beside one error per bad row."""
    files = {"file": ("hires.xlsx", MESSY_XLSX, "application/x")}

    response = await client.post("/preview", files=files)

    assert response.status_code == 200
    body = response.json()
    assert [(e["row"], e["column"]) for e in body["errors"]] == EXPECTED_ERRORS
    assert all(e["message"] and e["fix"] for e in body["errors"])
    texts = {letter["recipient"]: letter["text"] for letter in body["preview"]}
    for recipient, phrases in EXPECTED_LETTERS.items():
        for phrase in phrases:
            assert phrase in texts[recipient], (recipient, phrase)


async def test_sending_the_messy_roster_is_refused_whole(
    client: httpx.AsyncClient, smtp: SmtpSink
) -> None:
    """POST /send-emails on the same roster queues nothing and lists the same rows."""
    files = {"file": ("hires.xlsx", MESSY_XLSX, "application/x")}

    response = await client.post("/send-emails", files=files)

    assert response.status_code == 422
    errors = response.json()["errors"]
    assert [(e["row"], e["column"]) for e in errors] == EXPECTED_ERRORS
    assert smtp.received == []
