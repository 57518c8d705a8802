"""Ingest: the one pipeline from roster bytes to a published batch of letters.

Used by the API and the CLI alike. Rows stream from the roster, are rendered
into letters and go straight to the publisher; the batch is all-or-nothing,
so the first row error stops publishing, the rest of the rows are still read
to report every error at once, and the publisher withdraws the batch.
"""

from __future__ import annotations

import asyncio
import contextlib
import hashlib
from collections.abc import AsyncIterator, Iterator
from dataclasses import dataclass, field
from itertools import islice

import structlog

from offerletters.config import Settings
from offerletters.errors import OfferLettersError, RosterTooLarge
from offerletters.ledger import Ledger
from offerletters.letters import CORE_VARIABLES, Letter, LetterTemplates
from offerletters.metrics import INGEST_ROWS, LETTERS_QUEUED
from offerletters.queue import BatchWriter, Publisher
from offerletters.roster import (
    Candidate,
    RosterOptions,
    RosterRejected,
    RowError,
    open_roster,
)

log = structlog.get_logger(__name__)

# Rows read and rendered per trip to a worker thread: large enough to make the
# hand-off cheap, small enough to keep the event loop responsive.
ROWS_PER_CHUNK = 500


@dataclass(frozen=True, slots=True)
class BatchReceipt:
    """What ingest tells the uploader: which batch, how many letters, any notes."""

    batch_id: str
    letters: int
    sheet: str | None
    notes: list[str] = field(default_factory=list)
    # True when this roster (or request) was seen before: nothing new was sent.
    duplicate: bool = False
    # Row errors, only ever present when ingest ran without all-or-nothing.
    errors: list[RowError] = field(default_factory=list)


def batch_id_for(roster: bytes, *, salt: str | None = None) -> str:
    """A batch is named by its roster's content, so sending the same roster
    again is recognised and nothing is sent twice. A salt (the caller's
    idempotency key, or a random one) names a deliberate new batch of it."""
    digest = hashlib.sha256(roster)
    if salt is not None:
        digest.update(b"\x00" + salt.encode())
    return digest.hexdigest()[:32]


async def ingest(
    data: bytes,
    *,
    publisher: Publisher,
    templates: LetterTemplates,
    settings: Settings,
    ledger: Ledger | None = None,
    batch_id: str | None = None,
    options: RosterOptions | None = None,
    all_or_nothing: bool = True,
) -> BatchReceipt:
    """Validate, render and publish a roster; or raise RosterRejected, listing all.

    With a ledger, the batch and its letters are recorded as they are
    published, and a batch the ledger already holds as published is not
    published again. `batch_id` defaults to one derived from the roster.
    With `all_or_nothing` off, the good rows are published and the row
    errors come back in the receipt instead: for previews.
    """
    if len(data) > settings.max_upload_bytes:
        raise RosterTooLarge("bytes", settings.max_upload_bytes)

    batch_id = batch_id or batch_id_for(data)
    if ledger is not None:
        known = await ledger.find_batch(batch_id)
        if known is not None and known.published:
            log.info("batch_duplicate", batch_id=batch_id)
            return BatchReceipt(batch_id, known.letters or 0, None, duplicate=True)
        publisher = RecordingPublisher(publisher, ledger, batch_id, data)

    options = options or RosterOptions(
        max_rows=settings.max_rows,
        day_first=settings.date_order == "dmy",
        max_unpacked_bytes=settings.max_unpacked_bytes,
        max_unpack_ratio=settings.max_unpack_ratio,
    )
    roster = await asyncio.to_thread(open_roster, data, options)
    templates.check(roster.extra_columns.keys())

    # Extra columns the letter cannot do without: a row that leaves one empty
    # is a row error, never a letter with a gap in it. A core variable (such
    # as first_name) has a value of its own to fall back on.
    needed = {
        key: header
        for key, header in roster.extra_columns.items()
        if key in templates.required and key not in CORE_VARIABLES
    }
    rendered = _render(roster.rows(), templates, batch_id, settings, needed)
    errors: list[RowError] = []
    notes: list[str] = []
    published = 0
    async with publisher.batch() as writer:
        while chunk := await asyncio.to_thread(list, islice(rendered, ROWS_PER_CHUNK)):
            for item in chunk:
                if isinstance(item, RowError):
                    errors.append(item)
                elif not (errors and all_or_nothing):
                    letter, item_notes = item
                    notes.extend(item_notes)
                    await writer.put(letter)
                    published += 1

        if errors and all_or_nothing:
            raise RosterRejected(errors)
        if not published and not errors:
            raise RosterRejected(
                [RowError(roster.header_row, None, "the roster has no candidate rows")]
            )

    log.info("batch_received", batch_id=batch_id, letters=published, sheet=roster.sheet)
    return BatchReceipt(batch_id, published, roster.sheet, notes, errors=errors)


def _render(
    rows: Iterator[Candidate | RowError],
    templates: LetterTemplates,
    batch_id: str,
    settings: Settings,
    needed: dict[str, str],
) -> Iterator[tuple[Letter, tuple[str, ...]] | RowError]:
    """Letters (with the row's notes) for good rows; row errors pass through.

    `needed` maps the extra columns the templates read unguarded to their
    headers; a candidate without one of them gets a row error for each.
    """
    sender = settings.sender_address
    for row in rows:
        if isinstance(row, RowError):
            yield row
            continue

        empty = [key for key in needed if key not in row.extra]
        if empty:
            yield from (
                _needed_but_empty(row, needed[key], key, templates) for key in empty
            )
            continue

        notes = tuple(f"row {row.row}: {note}" for note in row.notes)
        yield templates.render(row, batch_id=batch_id, sender=sender), notes


def _needed_but_empty(
    row: Candidate, header: str, key: str, templates: LetterTemplates
) -> RowError:
    return RowError(
        row.row,
        header,
        f"{header} is empty, and the letter needs it ({templates.first_use(key)})",
        fix=f"fill in {header}, or make the templates skip it where it is"
        f" empty with {{% if {key} is defined %}}",
    )


class RecordingPublisher:
    """Wraps a publisher so the ledger records the batch as it is published.

    Queued rows are written as letters pass, before the queue commits; the
    batch counts as published only after the queue committed; a batch that
    fails is forgotten, so it can be sent again from scratch.
    """

    def __init__(
        self, inner: Publisher, ledger: Ledger, batch_id: str, roster: bytes
    ) -> None:
        self._inner = inner
        self._ledger = ledger
        self._batch_id = batch_id
        self._sha256 = hashlib.sha256(roster).hexdigest()

    @contextlib.asynccontextmanager
    async def batch(self) -> AsyncIterator[_RecordingWriter]:
        await self._ledger.begin_batch(self._batch_id, self._sha256)
        try:
            async with self._inner.batch() as inner:
                writer = _RecordingWriter(inner, self._ledger)
                yield writer
                await writer.flush()
        except BaseException:
            await asyncio.shield(self._forget())
            raise

        await self._ledger.mark_published(self._batch_id, letters=writer.count)
        # Counted here, not in ingest(): previews publish nowhere real.
        LETTERS_QUEUED.inc(writer.count)
        INGEST_ROWS.observe(writer.count)

    async def _forget(self) -> None:
        try:
            await self._ledger.forget_batch(self._batch_id)
        except OfferLettersError as exc:
            # Left as 'not published': the next upload of it starts over.
            log.warning("batch_not_forgotten", batch_id=self._batch_id, error=str(exc))


class _RecordingWriter:
    def __init__(self, inner: BatchWriter, ledger: Ledger) -> None:
        self._inner = inner
        self._ledger = ledger
        self._unrecorded: list[Letter] = []
        self.count = 0

    async def put(self, letter: Letter) -> None:
        await self._inner.put(letter)
        self._unrecorded.append(letter)
        self.count += 1
        if len(self._unrecorded) >= ROWS_PER_CHUNK:
            await self.flush()

    async def flush(self) -> None:
        unrecorded, self._unrecorded = self._unrecorded, []
        await self._ledger.add_letters(unrecorded)
