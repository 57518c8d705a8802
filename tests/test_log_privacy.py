"""Logs stay private: no address, salary, letter text or secret, whatever happens."""

from __future__ import annotations

import json
import re
import subprocess
import sys
import textwrap
import threading
from collections.abc import Iterator
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

import pytest
from aiosmtpd.controller import Controller
from aiosmtpd.smtp import SMTP, AuthResult, Envelope, LoginPassword, Session
from pydantic import SecretStr

from offerletters.letters import Letter
from offerletters.logs import REDACTED, renderer_for, scrub_private
from offerletters.sealing import new_key
from tests import rosters
from tests.conftest import MakeSettings
from tests.rosters import Sheet, candidate, roster
from tests.support.services import free_port, run_cli, settings_env

# Fakes, each distinctive enough that finding it anywhere in a log is a leak.
SMTP_USER = "offers-relay"
SMTP_PASSWORD = "smtp-pw-Qx71-never-logged"  # noqa: S105  # a fake, to look for
API_KEY = "apikey-4f1c9e2b7d8a6035-never-logged"
PAYLOAD_KEY = new_key()

REFUSED = "refused.person@example.net"
DEFERRED = "dana.deferred@example.com"
CANDIDATES = [
    candidate("Zoë Quintavalle", "zoe.quintavalle@example.com", "Engineer", 120000),
    candidate("Bartholomew Okonkwo", "bart.okonkwo@example.org", "Designer", 98765),
    candidate("Refused Person", REFUSED, "Analyst", 143210),
    candidate("Dana Deferred", DEFERRED, "Nurse", 87654),
]
ADDRESSES = [str(row[1]) for row in CANDIDATES]
SALARIES = ["120,000", "120000", "98,765", "98765", "143,210", "143210", "87,654"]
LETTER_TEXT = ["delighted to offer you", "Base salary", "Dear Zo", "Your offer to join"]
# A full address: more than one character before the '@' and no mask.
FULL_ADDRESS = re.compile(r"[\w.+-]{2,}@[\w-]+\.[\w.-]+")


@dataclass
class _Mailbox:
    """An aiosmtpd handler that logs in, refuses one address and defers another."""

    received: list[tuple[str, bool]] = field(default_factory=list)
    deferred_once: bool = False
    lock: threading.Lock = field(default_factory=threading.Lock)

    async def handle_RCPT(  # aiosmtpd's hook name
        self,
        server: SMTP,
        session: Session,
        envelope: Envelope,
        address: str,
        rcpt_options: list[str],
    ) -> str:
        # Real servers quote the address in their replies: a classic leak.
        if address == REFUSED:
            return f"550 5.1.1 <{address}>: Recipient address rejected"
        with self.lock:
            defer = address == DEFERRED and not self.deferred_once
            self.deferred_once |= defer
        if defer:
            return f"451 4.7.1 <{address}>: greylisted, try again later"

        envelope.rcpt_tos.append(address)
        return "250 OK"

    async def handle_DATA(  # aiosmtpd's hook name
        self, server: SMTP, session: Session, envelope: Envelope
    ) -> str:
        with self.lock:
            self.received.append((envelope.rcpt_tos[0], bool(session.authenticated)))
        return "250 Message accepted for delivery"


def _authenticate(
    server: SMTP, session: Session, envelope: Envelope, mechanism: str, data: Any
) -> AuthResult:
    ok = isinstance(data, LoginPassword) and (data.login, data.password) == (
        SMTP_USER.encode(),
        SMTP_PASSWORD.encode(),
    )
    return AuthResult(success=ok)


@dataclass
class LoginSink:
    mailbox: _Mailbox
    host: str
    port: int


@pytest.fixture
def login_smtp() -> Iterator[LoginSink]:
    """A real SMTP server that asks for a login, as a relay with a password does."""
    mailbox = _Mailbox()
    port = free_port()
    controller = Controller(
        mailbox,
        hostname="127.0.0.1",
        port=port,
        authenticator=_authenticate,
        auth_require_tls=False,  # a plain-text relay, as the settings allow
        enable_SMTPUTF8=True,
    )
    controller.start()
    try:
        yield LoginSink(mailbox, "127.0.0.1", port)
    finally:
        controller.stop()


def test_a_whole_batch_leaves_nothing_private_in_the_logs(
    make_settings: MakeSettings, login_smtp: LoginSink, tmp_path: Path
) -> None:
    """`send` at DEBUG, with a refusal and a retry, logs nothing private."""
    settings = make_settings(
        smtp_host=login_smtp.host,
        smtp_port=login_smtp.port,
        smtp_username=SMTP_USER,
        smtp_password=SMTP_PASSWORD,
        smtp_allow_plaintext_auth=True,
        smtp_max_attempts=3,
        api_keys=API_KEY,
        payload_keys=f"k1={PAYLOAD_KEY}",
    )
    path = tmp_path / "roster.xlsx"
    path.write_bytes(rosters.xlsx(Sheet("Hires", roster(*CANDIDATES))))

    env = settings_env(
        settings, OFFERLETTERS_LOG_LEVEL="DEBUG", OFFERLETTERS_LOG_FORMAT="json"
    )
    result = run_cli(["send", str(path)], env, tmp_path)
    logs = result.stderr
    events = [json.loads(line) for line in logs.splitlines() if line.strip()]

    assert result.returncode == 3, result.stdout + logs  # one letter refused
    assert sorted(login_smtp.mailbox.received) == sorted(
        (address, True) for address in ADDRESSES if address != REFUSED
    )
    names = [e["event"] for e in events]
    assert names.count("letter_sent") == 3
    assert "letter_retrying" in names
    assert "letter_failed" in names
    for secret in [SMTP_PASSWORD, API_KEY, PAYLOAD_KEY]:
        assert secret not in logs + result.stdout
    for private in [*ADDRESSES, *SALARIES, *LETTER_TEXT]:
        assert private not in logs
    assert not FULL_ADDRESS.findall(logs)
    failed = next(e for e in events if e["event"] == "letter_failed")
    assert "<r***@example.net>" in failed["reply"]


def test_the_net_masks_addresses_anywhere_and_drops_secrets() -> None:
    """Addresses in any field or text are masked; secret and body fields go."""
    letter = Letter(
        letter_id="L",
        batch_id="B",
        row=2,
        recipient="ana.lima@example.com",
        recipient_name="Ana Lima",
        subject="Your offer",
        text="Base salary: $120,000",
        html="<p>Base salary</p>",
        message_id="<L@acme.example>",
    )
    event = {
        "event": "send to ana.lima@example.com failed",
        "reply": "550 5.1.1 <ana.lima@example.com>: no such user",
        "to": "a***@example.com",
        "smtp_password": "hunter2",
        "X-Api-Key": "k",
        "oauth_token": "t",
        "text": "Dear Ana, your salary is $120,000",
        "database": "postgresql+asyncpg://hr:s3cret@db.internal/offers",
        "nested": {"payload_keys": "k1=abc", "cc": ["bo@example.org"]},
        "settings": SecretStr("x"),
        "letter": letter,
        "attempt": 2,
        "exception": "ValueError: bad address bo.li@example.org",
    }

    scrubbed = scrub_private(None, "info", dict(event))

    assert scrubbed == {
        "event": "send to a***@example.com failed",
        "reply": "550 5.1.1 <a***@example.com>: no such user",
        "to": "a***@example.com",
        "smtp_password": REDACTED,
        "X-Api-Key": REDACTED,
        "oauth_token": REDACTED,
        "text": REDACTED,
        "database": f"postgresql+asyncpg://hr:{REDACTED}@db.internal/offers",
        "nested": {"payload_keys": REDACTED, "cc": ["b***@example.org"]},
        "settings": REDACTED,
        "letter": "<Letter>",
        "attempt": 2,
        "exception": "ValueError: bad address b***@example.org",
    }


@pytest.mark.parametrize(
    ("fmt", "tty", "json_lines"),
    [
        ("auto", False, True),
        ("auto", True, False),
        ("json", True, True),
        ("console", False, False),
    ],
)
def test_the_log_format_follows_the_setting(
    fmt: str, tty: bool, json_lines: bool
) -> None:
    """auto is JSON unless on a terminal; json and console are what they say."""
    rendered = renderer_for(fmt, tty=tty)(
        None, "info", {"event": "letter_sent", "n": 1}
    )

    assert isinstance(rendered, str)
    assert rendered.startswith("{") is json_lines


SCRIPT = textwrap.dedent(
    """
    import logging, sys
    import structlog
    from offerletters import logs

    logs.configure(sys.argv[1], sys.argv[2])
    log = structlog.get_logger("offerletters.test")
    log.info("letter_sent", to="ana.lima@example.com")
    logging.getLogger("aiokafka").warning("lost ana.lima@example.com")
    logging.getLogger("aiokafka").info("chatter")
    """
)


@pytest.mark.parametrize("fmt", ["json", "console"])
def test_library_logs_share_the_format_and_the_net(fmt: str) -> None:
    """Stdlib records (aiokafka, uvicorn) come out in the same format, masked."""
    result = subprocess.run(
        [sys.executable, "-c", SCRIPT, "INFO", fmt],
        capture_output=True,
        text=True,
        timeout=60,
        check=True,
    )
    lines = result.stderr.splitlines()

    assert len(lines) == 2, result.stderr  # library INFO chatter stays out
    assert all(line.startswith("{") is (fmt == "json") for line in lines)
    assert "ana.lima@" not in result.stderr
    assert result.stderr.count("a***@example.com") == 2
