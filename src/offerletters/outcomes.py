"""The outcome book: outcomes from many concurrent deliveries, one ledger write.

Every group of letters a worker handles must have its outcomes in the ledger
before its offsets are committed. Writing each group on its own would make
the database the bottleneck; the book gathers whatever arrives while the
previous write runs and records it in the next single transaction.
"""

from __future__ import annotations

import asyncio
import contextlib
from collections.abc import Sequence

import structlog

from offerletters.ledger import Ledger, LetterOutcome

log = structlog.get_logger(__name__)


class OutcomeBook:
    """Group commit for delivery outcomes; use as an async context manager."""

    def __init__(self, ledger: Ledger) -> None:
        self._ledger = ledger
        self._pending: list[LetterOutcome] = []
        self._waiting: list[asyncio.Future[None]] = []
        self._wake = asyncio.Event()
        self._writer: asyncio.Task[None] | None = None
        self._closing = False

    async def __aenter__(self) -> OutcomeBook:
        self._writer = asyncio.create_task(self._write_forever())
        return self

    async def __aexit__(self, *exc_info: object) -> None:
        """Write what is still pending, then stop the writer."""
        self._closing = True
        self._wake.set()
        if self._writer is not None:
            await self._writer

    def note(self, outcome: LetterOutcome) -> None:
        """Record an interim state (retrying) soon; nobody waits for it."""
        self._pending.append(outcome)
        self._wake.set()

    async def record(self, outcomes: Sequence[LetterOutcome]) -> None:
        """Record final outcomes; return once they are durable in the ledger."""
        if not outcomes:
            return

        written = asyncio.get_running_loop().create_future()
        self._pending.extend(outcomes)
        self._waiting.append(written)
        self._wake.set()
        await written

    async def _write_forever(self) -> None:
        while not (self._closing and not self._pending):
            await self._wake.wait()
            self._wake.clear()
            await self._write_pending()

    async def _write_pending(self) -> None:
        outcomes, self._pending = self._pending, []
        waiting, self._waiting = self._waiting, []
        try:
            await self._ledger.record_outcomes(outcomes)
        except Exception as exc:  # handed to every waiter, who decides
            for written in waiting:
                if not written.done():
                    written.set_exception(exc)
            if not waiting:
                log.warning("interim_outcomes_not_recorded", error=str(exc))
            return

        for written in waiting:
            with contextlib.suppress(asyncio.InvalidStateError):
                written.set_result(None)
