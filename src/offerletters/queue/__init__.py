"""The queue between ingest and delivery: Kafka in production, memory when embedded.

Both sides speak in letters. A publisher writes one batch as a unit (all of
its letters become visible to workers, or none do); a source hands letters to
a handler and acknowledges them only after the handler has returned.
"""

from __future__ import annotations

from collections.abc import Callable, Collection, Coroutine, Sequence
from contextlib import AbstractAsyncContextManager
from typing import Any, Protocol

from offerletters.ledger import LetterOutcome
from offerletters.letters import Letter

# Delivers a group of letters and returns once each has an outcome.
Handler = Callable[[Sequence[Letter]], Coroutine[Any, Any, None]]


class BatchWriter(Protocol):
    """Collects the letters of one batch while it is being published."""

    async def put(self, letter: Letter) -> None: ...


class Publisher(Protocol):
    """The producing side: publishes batches all-or-nothing."""

    def batch(self) -> AbstractAsyncContextManager[BatchWriter]:
        """Open a batch; leaving the block with an exception withdraws it whole."""
        ...


class Source(Protocol):
    """The consuming side: feeds letters to a handler until told to stop."""

    async def consume(self, handle: Handler) -> None:
        """Run until `stop()`; acknowledge letters only after `handle` returns."""
        ...

    def stop(self) -> None:
        """Stop taking new letters; letters already handed out are finished."""
        ...


class DeadLetterKeeper(Protocol):
    """Where letters that failed for good are kept, and found again for a retry."""

    async def keep(self, failed: Sequence[tuple[Letter, LetterOutcome]]) -> None: ...

    async def find(self, letter_ids: Collection[str]) -> list[Letter]: ...
