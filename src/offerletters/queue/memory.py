"""The embedded queue: letters wait in process memory for an in-process worker.

Used when no Kafka is configured, so a small team can send a roster from one
process. Nothing survives a restart; that is what Kafka mode is for.
"""

from __future__ import annotations

import asyncio
import contextlib
from collections.abc import AsyncIterator, Collection, Sequence

from offerletters.ledger import LetterOutcome
from offerletters.letters import Letter
from offerletters.queue import Handler

# How many letters one handler call receives at most.
CHUNK_SIZE = 64


class _ListWriter:
    def __init__(self) -> None:
        self.letters: list[Letter] = []

    async def put(self, letter: Letter) -> None:
        self.letters.append(letter)


class MemoryQueue:
    """An in-process Publisher, Source and keeper of dead letters in one."""

    def __init__(self) -> None:
        self._letters: asyncio.Queue[Letter] = asyncio.Queue()
        self._stopping = asyncio.Event()
        self._dead: dict[str, Letter] = {}

    @contextlib.asynccontextmanager
    async def batch(self) -> AsyncIterator[_ListWriter]:
        """Hold a batch's letters back until the whole batch was accepted."""
        writer = _ListWriter()
        yield writer

        for letter in writer.letters:
            self._letters.put_nowait(letter)

    async def consume(self, handle: Handler) -> None:
        """Hand letters to `handle` in chunks until `stop()` is called."""
        while (first := await self._next()) is not None:
            chunk = [first]
            while len(chunk) < CHUNK_SIZE and not self._letters.empty():
                chunk.append(self._letters.get_nowait())

            try:
                await handle(chunk)
            finally:
                for _ in chunk:
                    self._letters.task_done()

    async def keep(self, failed: Sequence[tuple[Letter, LetterOutcome]]) -> None:
        """Hold letters that failed for good, for a later retry."""
        for letter, _outcome in failed:
            self._dead[letter.letter_id] = letter

    async def find(self, letter_ids: Collection[str]) -> list[Letter]:
        """The held copies of these dead letters."""
        return [self._dead[i] for i in letter_ids if i in self._dead]

    async def drained(self) -> None:
        """Wait until every published letter has been handled."""
        await self._letters.join()

    def stop(self) -> None:
        self._stopping.set()

    async def _next(self) -> Letter | None:
        """The next letter, or None once stopping was asked for."""
        if self._stopping.is_set():
            return None

        getter = asyncio.ensure_future(self._letters.get())
        stopper = asyncio.ensure_future(self._stopping.wait())
        await asyncio.wait({getter, stopper}, return_when=asyncio.FIRST_COMPLETED)
        stopper.cancel()
        if getter.done():
            return getter.result()

        getter.cancel()
        return None
