"""A real SMTP server for tests: aiosmtpd on a free loopback port, in its own thread.

It runs its own event loop, so it keeps answering while a test blocks or while
worker subprocesses talk to it. It records every message it accepts and can be
told to refuse chosen addresses, to defer some attempts, or to take its time
over each message, like a real server. It can offer STARTTLS and AUTH (PLAIN,
LOGIN and XOAUTH2), to test how the mailer protects and logs in.
"""

from __future__ import annotations

import asyncio
import base64
import binascii
import email
import email.policy
import threading
from collections import Counter
from collections.abc import Callable, Iterator
from contextlib import contextmanager
from dataclasses import dataclass, field
from email.message import EmailMessage
from ssl import SSLContext
from typing import Any

from aiosmtpd.smtp import SMTP, AuthResult, Envelope, LoginPassword, Session


@dataclass(frozen=True)
class Received:
    """One message the server accepted."""

    sender: str
    recipients: list[str]
    raw: bytes

    @property
    def message(self) -> EmailMessage:
        parsed = email.message_from_bytes(self.raw, policy=email.policy.default)
        assert isinstance(parsed, EmailMessage)
        return parsed

    @property
    def text(self) -> str:
        """The plain-text body, decoded."""
        body = self.message.get_body(preferencelist=("plain",))
        assert body is not None
        content = body.get_content()
        assert isinstance(content, str)
        return content


@dataclass
class _Recorder:
    """The aiosmtpd handler: decides each reply and records what was accepted."""

    refuse: dict[str, str] = field(default_factory=dict)
    # Called with the recipient; a reply string defers (or refuses) that attempt.
    judge: Callable[[str], str | None] | None = None
    # Hang up right after accepting a message, as some servers do.
    hang_up_after_data: bool = False
    # Seconds the server takes over a message to this recipient before it
    # answers DATA; None answers at once.
    delay: Callable[[str], float] | None = None
    # Messages being taken in right now, that is, waiting out their delay.
    in_progress: int = 0
    # The next this many RCPTs get `busy_reply`; a 421 also ends the session.
    busy_for: int = 0
    busy_reply: str = "421 4.7.0 Too busy, try again later"
    # Logins the server accepts: user -> password (PLAIN, LOGIN), user ->
    # token (XOAUTH2); and (mechanism, user) of each accepted login.
    passwords: dict[str, str] = field(default_factory=dict)
    oauth_tokens: dict[str, str] = field(default_factory=dict)
    logins: list[tuple[str, str]] = field(default_factory=list)
    received: list[Received] = field(default_factory=list)
    attempts: Counter[str] = field(default_factory=Counter)
    connections: int = 0
    lock: threading.Condition = field(default_factory=threading.Condition)

    async def handle_RCPT(  # aiosmtpd's hook name
        self,
        server: SMTP,
        session: Session,
        envelope: Envelope,
        address: str,
        rcpt_options: list[str],
    ) -> str:
        with self.lock:
            self.attempts[address.lower()] += 1
            busy = self.busy_for > 0
            if busy:
                self.busy_for -= 1
        if busy:
            if self.busy_reply.startswith("421") and server.transport is not None:
                asyncio.get_running_loop().call_later(0.05, server.transport.close)
            return self.busy_reply
        if reply := self.refuse.get(address.lower()):
            return reply
        if self.judge and (reply := self.judge(address.lower())):
            return reply

        envelope.rcpt_tos.append(address)
        return "250 OK"

    async def handle_DATA(  # aiosmtpd's hook name
        self, server: SMTP, session: Session, envelope: Envelope
    ) -> str:
        if self.delay is not None:
            # A client that hangs up meanwhile cancels this handler, so only
            # messages whose 250 reply goes out are recorded as received.
            with self.lock:
                self.in_progress += 1
            try:
                await asyncio.sleep(self.delay(str(envelope.rcpt_tos[0])))
            finally:
                with self.lock:
                    self.in_progress -= 1
            if server.transport is None or server.transport.is_closing():
                return "421 4.3.0 Connection closing"

        content = envelope.original_content or b""
        with self.lock:
            self.received.append(
                Received(str(envelope.mail_from), list(envelope.rcpt_tos), content)
            )
            self.lock.notify_all()
        if self.hang_up_after_data and server.transport is not None:
            asyncio.get_running_loop().call_later(0.05, server.transport.close)
        return "250 Message accepted for delivery"

    def check_login(
        self,
        server: SMTP,
        session: Session,
        envelope: Envelope,
        mechanism: str,
        auth_data: Any,
    ) -> AuthResult:
        """aiosmtpd's authenticator for PLAIN and LOGIN: the user's password?"""
        assert isinstance(auth_data, LoginPassword)
        user = auth_data.login.decode()
        if self.passwords.get(user) != auth_data.password.decode():
            return AuthResult(success=False, handled=False)

        with self.lock:
            self.logins.append((mechanism, user))
        return AuthResult(success=True, auth_data=user)

    async def auth_XOAUTH2(  # aiosmtpd's hook name for AUTH XOAUTH2
        self, server: SMTP, args: list[str]
    ) -> AuthResult:
        """Accept `user=U^Aauth=Bearer T^A^A` when T is U's token."""
        try:
            blob = base64.b64decode(args[1], validate=True).decode()
        except (IndexError, binascii.Error, UnicodeDecodeError):
            return AuthResult(success=False, handled=False)

        fields = dict(part.split("=", 1) for part in blob.split("\x01") if "=" in part)
        user = fields.get("user", "")
        token = fields.get("auth", "").removeprefix("Bearer ")
        if not token or self.oauth_tokens.get(user) != token:
            return AuthResult(success=False, handled=False)

        with self.lock:
            self.logins.append(("XOAUTH2", user))
        return AuthResult(success=True, auth_data=user)


class SmtpSink:
    """The running server: its address, what it received, and knobs for faults."""

    def __init__(
        self,
        *,
        smtputf8: bool = True,
        starttls: SSLContext | None = None,
        auth: bool = False,
    ) -> None:
        """`starttls` offers STARTTLS with this context and then requires it;
        `auth` offers AUTH, on a plain line too (see `passwords` and
        `oauth_tokens` on the recorder for who may log in)."""
        self.recorder = _Recorder()
        self._smtputf8 = smtputf8
        self._starttls = starttls
        self._auth = auth
        self._loop = asyncio.new_event_loop()
        self._server: asyncio.Server | None = None
        self._sessions: list[SMTP] = []
        self._thread = threading.Thread(target=self._loop.run_forever, daemon=True)
        self.port = 0

    @property
    def host(self) -> str:
        return "127.0.0.1"

    @property
    def received(self) -> list[Received]:
        with self.recorder.lock:
            return list(self.recorder.received)

    def wait_for(self, count: int, timeout_s: float = 60) -> list[Received]:
        """Block until `count` messages were accepted; TimeoutError otherwise."""
        with self.recorder.lock:
            arrived = self.recorder.lock.wait_for(
                lambda: len(self.recorder.received) >= count, timeout=timeout_s
            )
            if not arrived:
                raise TimeoutError(
                    f"{len(self.recorder.received)} of {count} messages arrived"
                )
            return list(self.recorder.received)

    async def arrival_of(self, count: int, timeout_s: float = 60) -> list[Received]:
        """`wait_for` without blocking the event loop."""
        return await asyncio.to_thread(self.wait_for, count, timeout_s)

    def refuse(self, address: str, reply: str = "550 5.1.1 No such user") -> None:
        self.recorder.refuse[address.lower()] = reply

    def allow(self, address: str) -> None:
        """Stop refusing an address that `refuse` named."""
        self.recorder.refuse.pop(address.lower(), None)

    def judge_with(self, judge: Callable[[str], str | None] | None) -> None:
        self.recorder.judge = judge

    def busy_for(
        self, attempts: int, reply: str = "421 4.7.0 Too busy, try again later"
    ) -> None:
        """Answer the next `attempts` RCPTs with `reply`, as an overloaded server."""
        with self.recorder.lock:
            self.recorder.busy_for = attempts
            self.recorder.busy_reply = reply

    @property
    def logins(self) -> list[tuple[str, str]]:
        """(mechanism, user) of every login the server accepted."""
        with self.recorder.lock:
            return list(self.recorder.logins)

    def slow_down(self, delay: float | Callable[[str], float]) -> None:
        """Take this long over each message before accepting it: seconds, or a
        function of the recipient giving them."""
        if callable(delay):
            self.recorder.delay = delay
        else:
            self.recorder.delay = lambda _recipient: delay

    @property
    def in_progress(self) -> int:
        """Messages the server is taking in (see `slow_down`) and has not answered."""
        with self.recorder.lock:
            return self.recorder.in_progress

    @property
    def rcpt_attempts(self) -> Counter[str]:
        """How many times each address was offered in RCPT TO, refused or not."""
        with self.recorder.lock:
            return Counter(self.recorder.attempts)

    def copies(self) -> Counter[str]:
        """How many accepted messages each recipient got; above 1 is a duplicate."""
        return Counter(r.recipients[0] for r in self.received)

    def start(self) -> None:
        """Listen; a port given before (after a stop) is reused."""
        if not self._thread.is_alive():
            self._thread.start()
        future = asyncio.run_coroutine_threadsafe(self._listen(), self._loop)
        self.port = future.result(timeout=10)

    def stop_listening(self) -> None:
        """Close the listener and every open connection, as a crashed server would."""
        future = asyncio.run_coroutine_threadsafe(self._close(), self._loop)
        future.result(timeout=10)

    def close(self) -> None:
        self.stop_listening()
        self._loop.call_soon_threadsafe(self._loop.stop)
        self._thread.join(timeout=10)
        self._loop.close()

    async def _listen(self) -> int:
        def protocol() -> Any:
            with self.recorder.lock:
                self.recorder.connections += 1
            session = SMTP(
                self.recorder,
                enable_SMTPUTF8=self._smtputf8,
                hostname="sink.test",
                ident="offerletters test sink",
                tls_context=self._starttls,
                require_starttls=self._starttls is not None,
                auth_require_tls=not self._auth,
                authenticator=self.recorder.check_login if self._auth else None,
            )
            self._sessions.append(session)
            return session

        self._server = await self._loop.create_server(protocol, self.host, self.port)
        return int(self._server.sockets[0].getsockname()[1])

    async def _close(self) -> None:
        if self._server is not None:
            self._server.close()
            self._server = None
        for session in self._sessions:
            if session.transport is not None:
                session.transport.close()
        self._sessions.clear()


@contextmanager
def running_sink(
    *, smtputf8: bool = True, starttls: SSLContext | None = None, auth: bool = False
) -> Iterator[SmtpSink]:
    sink = SmtpSink(smtputf8=smtputf8, starttls=starttls, auth=auth)
    sink.start()
    try:
        yield sink
    finally:
        sink.close()
