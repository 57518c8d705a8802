"""A real SMTP server for tests: aiosmtpd on a free loopback port, in its own thread.

It runs its own event loop, so it keeps answering while a test blocks or while
worker subprocesses talk to it. It records every message it accepts and can be
told to refuse chosen addresses, or to defer some attempts, like a real server.
"""

from __future__ import annotations

import asyncio
import email
import email.policy
import threading
from collections import Counter
from collections.abc import Callable, Iterator
from contextlib import contextmanager
from dataclasses import dataclass, field
from email.message import EmailMessage
from typing import Any

from aiosmtpd.smtp import SMTP, Envelope, Session


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
        if reply := self.refuse.get(address.lower()):
            return reply
        if self.judge and (reply := self.judge(address.lower())):
            return reply

        envelope.rcpt_tos.append(address)
        return "250 OK"

    async def handle_DATA(  # aiosmtpd's hook name
        self, server: SMTP, session: Session, envelope: Envelope
    ) -> str:
        content = envelope.original_content or b""
        with self.lock:
            self.received.append(
                Received(str(envelope.mail_from), list(envelope.rcpt_tos), content)
            )
            self.lock.notify_all()
        if self.hang_up_after_data and server.transport is not None:
            asyncio.get_running_loop().call_later(0.05, server.transport.close)
        return "250 Message accepted for delivery"


class SmtpSink:
    """The running server: its address, what it received, and knobs for faults."""

    def __init__(self, *, smtputf8: bool = True) -> None:
        self.recorder = _Recorder()
        self._smtputf8 = smtputf8
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

    def judge_with(self, judge: Callable[[str], str | None] | None) -> None:
        self.recorder.judge = judge

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
def running_sink(*, smtputf8: bool = True) -> Iterator[SmtpSink]:
    sink = SmtpSink(smtputf8=smtputf8)
    sink.start()
    try:
        yield sink
    finally:
        sink.close()
