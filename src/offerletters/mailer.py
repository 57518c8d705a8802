"""The mailer: hands one letter at a time to an SMTP server, or to the outbox folder.

SMTP delivery goes through a fixed pool of long-lived connections; a letter
waits for a free connection, so the pool size is also the cap on concurrent
sends. Every failure comes out as DeliveryFailed, classified as retriable
(4xx replies, connection faults, timeouts) or permanent (5xx replies).
"""

from __future__ import annotations

import asyncio
import os
import time
from dataclasses import dataclass, field
from email.errors import MessageError
from email.message import EmailMessage
from pathlib import Path
from typing import Protocol

import aiosmtplib

from offerletters.config import Settings, SmtpSecurity
from offerletters.errors import DeliveryFailed
from offerletters.letters import Letter, build_message

# SMTP reply classes (RFC 5321 section 4.2.1): the first digit decides.
TRANSIENT_REPLY = 4
PERMANENT_REPLY = 5
# "Service not available, closing transmission channel": the line is gone.
SERVICE_CLOSING = 421

# A connection idle this long is checked with a NOOP before it carries a letter.
IDLE_PROBE_AFTER_S = 5.0
NOOP_TIMEOUT_S = 5.0


class Mailer(Protocol):
    """Delivers letters; `where` says to whom, for logs and summaries."""

    where: str

    async def send(self, letter: Letter) -> str:
        """Deliver one letter and return the server's reply; raise DeliveryFailed."""
        ...

    async def stop(self) -> None: ...


def make_mailer(settings: Settings) -> Mailer:
    """The SMTP mailer when a host is configured, else the outbox folder."""
    if settings.smtp_host:
        return SmtpMailer(settings)

    return OutboxMailer(settings)


class SmtpMailer:
    """Sends through a bounded pool of reusable aiosmtplib connections."""

    def __init__(self, settings: Settings) -> None:
        self._settings = settings
        self.where = f"smtp://{settings.smtp_host}:{settings.smtp_port_or_default}"
        self._idle: asyncio.LifoQueue[_Connection] = asyncio.LifoQueue()
        for _ in range(settings.smtp_connections):
            self._idle.put_nowait(_Connection(self._new_client()))

    async def send(self, letter: Letter) -> str:
        message = _message_for(letter, self._settings)
        connection = await self._idle.get()
        try:
            return await self._send_on(connection, message, letter.recipient)
        finally:
            connection.last_used = time.monotonic()
            self._idle.put_nowait(connection)

    async def stop(self) -> None:
        """Say goodbye on every idle connection; safe to call twice."""
        while not self._idle.empty():
            client = self._idle.get_nowait().client
            if client.is_connected:
                try:
                    await client.quit()
                except (aiosmtplib.SMTPException, OSError):
                    client.close()

    async def _send_on(
        self, connection: _Connection, message: EmailMessage, recipient: str
    ) -> str:
        client = connection.client
        try:
            await _ready(connection)
            _refused, reply = await client.send_message(message, recipients=[recipient])
        except aiosmtplib.SMTPRecipientsRefused as exc:
            refusal = exc.recipients[0]
            raise _classified(refusal.code, refusal.message) from exc
        except aiosmtplib.SMTPNotSupported as exc:
            raise DeliveryFailed(
                f"the server cannot take this letter: {exc}", retriable=False
            ) from exc
        except (ValueError, MessageError) as exc:
            # The message could not be put on the wire as it stands; sending
            # it again would fail the same way.
            raise DeliveryFailed(
                f"the letter could not be encoded for SMTP ({type(exc).__name__})",
                retriable=False,
            ) from exc
        except aiosmtplib.SMTPResponseException as exc:
            if exc.code == SERVICE_CLOSING:
                client.close()
            raise _classified(exc.code, exc.message) from exc
        except (aiosmtplib.SMTPException, OSError) as exc:
            # The connection is in an unknown state: drop it, reopen next time.
            client.close()
            raise DeliveryFailed(
                f"connection to {self.where} failed: {exc}", retriable=True
            ) from exc

        return reply

    def _new_client(self) -> aiosmtplib.SMTP:
        settings = self._settings
        password = settings.smtp_password
        return aiosmtplib.SMTP(
            hostname=settings.smtp_host,
            port=settings.smtp_port_or_default,
            username=settings.smtp_username,
            password=password.get_secret_value() if password else None,
            use_tls=settings.smtp_security is SmtpSecurity.TLS,
            start_tls=settings.smtp_security is SmtpSecurity.STARTTLS or None,
            timeout=settings.smtp_timeout_s,
        )


@dataclass(eq=False)
class _Connection:
    """A pooled SMTP client and when it last carried a letter."""

    client: aiosmtplib.SMTP
    last_used: float = field(default_factory=time.monotonic)


async def _ready(connection: _Connection) -> None:
    """Connect, or make sure a connection idle for a while is still open.

    Servers close idle connections without telling us; a NOOP finds out
    before a letter is put on a dead line, so no attempt is wasted.
    """
    client = connection.client
    idle_s = time.monotonic() - connection.last_used
    if client.is_connected and idle_s > IDLE_PROBE_AFTER_S:
        try:
            await client.noop(timeout=NOOP_TIMEOUT_S)
        except (aiosmtplib.SMTPException, OSError):
            client.close()

    if not client.is_connected:
        await client.connect()


def _classified(code: int, reply: str) -> DeliveryFailed:
    """A refusal with its reply: 4xx may pass with time, anything else will not."""
    return DeliveryFailed(f"{code} {reply}", retriable=code // 100 == TRANSIENT_REPLY)


class OutboxMailer:
    """Writes each letter as an .eml file, for trying things out without a server."""

    def __init__(self, settings: Settings) -> None:
        self._settings = settings
        self._folder = settings.outbox_dir
        self.where = f"outbox folder {self._folder}"

    async def send(self, letter: Letter) -> str:
        data = bytes(_message_for(letter, self._settings))
        path = self._folder / f"{letter.letter_id}.eml"
        await asyncio.to_thread(_write_atomically, path, data)
        return f"written to {path}"

    async def stop(self) -> None:
        return None


def _message_for(letter: Letter, settings: Settings) -> EmailMessage:
    return build_message(
        letter, sender=settings.sender_address, reply_to=settings.reply_to
    )


def _write_atomically(path: Path, data: bytes) -> None:
    """A reader of the outbox never sees half a letter."""
    path.parent.mkdir(parents=True, exist_ok=True)
    partial = path.with_suffix(".part")
    partial.write_bytes(data)
    os.replace(partial, path)
