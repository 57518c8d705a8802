"""The mailer: hands one letter at a time to an SMTP server, or to the outbox folder.

SMTP delivery goes through a fixed pool of long-lived connections; a letter
waits for a free connection, so the pool size is also the cap on concurrent
sends, and then for its turn from the throttle, which keeps to the provider's
rate and slows down when the server signals overload. Every failure comes out
as DeliveryFailed, classified as retriable (4xx replies, connection faults,
timeouts) or permanent (5xx replies).
"""

from __future__ import annotations

import asyncio
import os
import shlex
import ssl
import time
from collections.abc import Callable
from dataclasses import dataclass, field
from pathlib import Path
from typing import Protocol

import aiosmtplib
import structlog

from offerletters.config import Settings, SmtpSecurity
from offerletters.errors import DeliveryFailed
from offerletters.letters import Letter, OutgoingMessage, build_message
from offerletters.logs import mask_addresses
from offerletters.metrics import SMTP_CONNECTIONS_OPEN, SMTP_SEND_SECONDS
from offerletters.throttle import Permit, Throttle

log = structlog.get_logger(__name__)

# SMTP reply classes (RFC 5321 section 4.2.1): the first digit decides.
TRANSIENT_REPLY = 4
PERMANENT_REPLY = 5
# "Service not available, closing transmission channel": the line is gone.
SERVICE_CLOSING = 421
# Replies by which servers say they are overloaded or rationing a sender: 421
# closing, 450 mailbox busy, 451 local error, 452 out of storage, 454
# temporarily unable (TLS or login). They slow the throttle down.
OVERLOAD_REPLIES = frozenset({421, 450, 451, 452, 454})

# An OAuth token printed by the token command is reused this long; access
# tokens usually live an hour, and a rejected one is fetched again at once.
OAUTH_TOKEN_REUSE_S = 300.0

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

    def __init__(self, settings: Settings, *, throttle: Throttle | None = None) -> None:
        self._settings = settings
        self._compose = Composer(settings)
        self.where = f"smtp://{settings.smtp_host}:{settings.smtp_port_or_default}"
        self.throttle = throttle or Throttle.for_settings(settings)
        self._oauth = OAuthToken.for_settings(settings)
        self._idle: asyncio.LifoQueue[_Connection] = asyncio.LifoQueue()
        for _ in range(settings.smtp_connections):
            self._idle.put_nowait(_Connection(self._new_client()))

    async def send(self, letter: Letter) -> str:
        message = self._compose(letter)
        connection = await self._idle.get()
        try:
            permit = await self.throttle.acquire()
            return await self._send_reporting(connection, message, permit)
        finally:
            connection.last_used = time.monotonic()
            connection.count_open()
            self._idle.put_nowait(connection)

    async def stop(self) -> None:
        """Say goodbye on every idle connection; safe to call twice."""
        while not self._idle.empty():
            connection = self._idle.get_nowait()
            client = connection.client
            if client.is_connected:
                try:
                    await client.quit()
                except (aiosmtplib.SMTPException, OSError):
                    client.close()
            connection.count_open()

    async def _send_reporting(
        self,
        connection: _Connection,
        message: OutgoingMessage,
        permit: Permit,
    ) -> str:
        """Send, time it, and tell the throttle how the server took it."""
        started = time.perf_counter()
        try:
            reply = await self._send_on(connection, message)
        except DeliveryFailed as exc:
            signal = _overload_signal(exc.__cause__)
            if signal is None:
                self.throttle.healthy(permit)
            else:
                self.throttle.overloaded(permit, signal)
            raise
        finally:
            SMTP_SEND_SECONDS.observe(time.perf_counter() - started)

        self.throttle.healthy(permit)
        return reply

    async def _send_on(self, connection: _Connection, message: OutgoingMessage) -> str:
        client = connection.client
        try:
            await _ready(connection)
            _refused, reply = await client.sendmail(
                message.sender,
                [message.recipient],
                message.data,
                mail_options=message.mail_options,
            )
        except aiosmtplib.SMTPRecipientsRefused as exc:
            refusal = exc.recipients[0]
            if refusal.code == SERVICE_CLOSING:
                client.close()
            raise _classified(refusal.code, refusal.message) from exc
        except aiosmtplib.SMTPNotSupported as exc:
            raise DeliveryFailed(
                f"the server cannot take this letter: {exc}", retriable=False
            ) from exc
        except ssl.SSLError as exc:
            # Before ValueError: certificate errors are ValueErrors too.
            client.close()
            raise DeliveryFailed(
                f"TLS with {self.where} failed: {exc}", retriable=True
            ) from exc
        except ValueError as exc:
            # The message could not be put on the wire as it stands; sending
            # it again would fail the same way.
            raise DeliveryFailed(
                f"the letter could not be encoded for SMTP ({type(exc).__name__})",
                retriable=False,
            ) from exc
        except aiosmtplib.SMTPAuthenticationError as exc:
            raise self._login_refused(exc) from exc
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

    def _login_refused(self, exc: aiosmtplib.SMTPAuthenticationError) -> DeliveryFailed:
        """A refused login; with a token command, the token may just have expired."""
        if self._oauth is not None and self._oauth.renewable:
            self._oauth.forget()
            return DeliveryFailed(
                f"{exc.code} {exc.message} (a new OAuth token is fetched next time)",
                retriable=True,
            )

        return _classified(exc.code, exc.message)

    def _new_client(self) -> aiosmtplib.SMTP:
        settings = self._settings
        # XOAUTH2 when a token is configured; a password as well would be
        # refused by aiosmtplib, and the token is the stronger of the two.
        password = None if self._oauth is not None else settings.smtp_password
        return aiosmtplib.SMTP(
            hostname=settings.smtp_host,
            port=settings.smtp_port_or_default,
            username=settings.smtp_username,
            password=password.get_secret_value() if password else None,
            oauth_token_generator=self._oauth,
            use_tls=settings.smtp_security is SmtpSecurity.TLS,
            start_tls=settings.smtp_security is SmtpSecurity.STARTTLS or None,
            validate_certs=settings.smtp_validate_certs,
            timeout=settings.smtp_timeout_s,
        )


class OAuthToken:
    """The XOAUTH2 access token: configured as is, or printed by a command.

    A command's token is kept for OAUTH_TOKEN_REUSE_S and fetched again
    sooner when the server refuses it (`forget`). Concurrent connections
    wait for one run of the command rather than each starting their own.
    """

    def __init__(
        self,
        *,
        token: str | None = None,
        command: str | None = None,
        timeout_s: float = 30.0,
        clock: Callable[[], float] = time.monotonic,
    ) -> None:
        self._token = token
        self._command = command
        self._timeout_s = timeout_s
        self._clock = clock
        self._fetched_at = 0.0
        self._fetching = asyncio.Lock()

    @classmethod
    def for_settings(cls, settings: Settings) -> OAuthToken | None:
        """The token source the settings name, or None for no XOAUTH2."""
        if settings.smtp_oauth_token is not None:
            return cls(token=settings.smtp_oauth_token.get_secret_value())
        if settings.smtp_oauth_token_command:
            return cls(
                command=settings.smtp_oauth_token_command,
                timeout_s=settings.smtp_timeout_s,
            )
        return None

    @property
    def renewable(self) -> bool:
        """True when a refused token can be replaced by running the command."""
        return self._command is not None

    async def __call__(self) -> str:
        """The token to log in with; runs the command when none is fresh."""
        async with self._fetching:
            stale = self._clock() - self._fetched_at > OAUTH_TOKEN_REUSE_S
            if self._command is not None and (self._token is None or stale):
                self._token = await self._run_command(self._command)
                self._fetched_at = self._clock()
                log.info("smtp_oauth_token_fetched")
            if self._token is None:
                raise DeliveryFailed("no OAuth token could be had", retriable=True)
            return self._token

    def forget(self) -> None:
        """Drop a command's token, so the next login fetches a new one."""
        if self._command is not None:
            self._token = None

    async def _run_command(self, command: str) -> str:
        """Run the token command without a shell; its stdout, stripped, is the token."""
        # The command line and its stderr may hold client secrets: never quoted.
        setting = "OFFERLETTERS_SMTP_OAUTH_TOKEN_COMMAND"
        try:
            process = await asyncio.create_subprocess_exec(
                *shlex.split(command),
                stdin=asyncio.subprocess.DEVNULL,
                stdout=asyncio.subprocess.PIPE,
                stderr=asyncio.subprocess.DEVNULL,
            )
        except (OSError, ValueError) as exc:
            raise DeliveryFailed(
                f"{setting} could not be started ({type(exc).__name__})",
                retriable=True,
            ) from exc

        try:
            async with asyncio.timeout(self._timeout_s):
                stdout, _ = await process.communicate()
        except TimeoutError as exc:
            process.kill()
            await process.wait()
            raise DeliveryFailed(
                f"{setting} printed no token within {self._timeout_s:g} s",
                retriable=True,
            ) from exc

        token = stdout.decode("utf-8", errors="replace").strip()
        if process.returncode != 0 or not token:
            raise DeliveryFailed(
                f"{setting} exited with {process.returncode} and"
                f" {'a token' if token else 'no token'}",
                retriable=True,
            )
        return token


@dataclass(eq=False)
class _Connection:
    """A pooled SMTP client and when it last carried a letter."""

    client: aiosmtplib.SMTP
    last_used: float = field(default_factory=time.monotonic)
    # Whether this connection is counted in the open-connections gauge.
    counted_open: bool = False

    def count_open(self) -> None:
        """Bring the open-connections gauge in line with this connection.

        aiosmtplib closes a connection on its own when a command fails, so the
        state is read after each use rather than tracked at every close.
        """
        is_open = self.client.is_connected
        if is_open != self.counted_open:
            SMTP_CONNECTIONS_OPEN.inc(1 if is_open else -1)
            self.counted_open = is_open


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
    """A refusal with its reply: 4xx may pass with time, anything else will not.

    Servers often quote the address they refuse; the reply is kept in the
    ledger and shown to HR, so the address in it is masked.
    """
    return DeliveryFailed(
        f"{code} {mask_addresses(reply)}", retriable=code // 100 == TRANSIENT_REPLY
    )


def _overload_signal(cause: BaseException | None) -> str | None:
    """How a failure tells of an overloaded server, or None when it does not."""
    if isinstance(cause, aiosmtplib.SMTPRecipientsRefused):
        code = cause.recipients[0].code
        return str(code) if code in OVERLOAD_REPLIES else None
    if isinstance(cause, aiosmtplib.SMTPResponseException):
        return str(cause.code) if cause.code in OVERLOAD_REPLIES else None
    if isinstance(cause, aiosmtplib.SMTPTimeoutError):
        return "timeout"
    if isinstance(cause, ConnectionError):
        return "connection_failed"
    return None


class OutboxMailer:
    """Writes each letter as an .eml file, for trying things out without a server."""

    def __init__(self, settings: Settings) -> None:
        self._compose = Composer(settings)
        self._folder = settings.outbox_dir
        self.where = f"outbox folder {self._folder}"

    async def send(self, letter: Letter) -> str:
        data = self._compose(letter).data
        path = self._folder / f"{letter.letter_id}.eml"
        await asyncio.to_thread(_write_atomically, path, data)
        return f"written to {path}"

    async def stop(self) -> None:
        return None


class Composer:
    """Builds the message for a letter with the configured From and Reply-To.

    The sender is parsed once here: parsing it for every letter cost more
    than writing the whole message.
    """

    def __init__(self, settings: Settings) -> None:
        self._sender = settings.sender_address
        self._reply_to = settings.reply_to

    def __call__(self, letter: Letter) -> OutgoingMessage:
        return build_message(letter, sender=self._sender, reply_to=self._reply_to)


def _write_atomically(path: Path, data: bytes) -> None:
    """A reader of the outbox never sees half a letter."""
    path.parent.mkdir(parents=True, exist_ok=True)
    partial = path.with_suffix(".part")
    partial.write_bytes(data)
    os.replace(partial, path)
