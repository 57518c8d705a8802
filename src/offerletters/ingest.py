"""Ingest: the one pipeline from roster bytes to a published batch of letters.

Used by the API and the CLI alike. Rows stream from the roster, are rendered
into letters and go straight to the publisher; the batch is all-or-nothing,
so the first row error stops publishing, the rest of the rows are still read
to report every error at once, and the publisher withdraws the batch.
"""

from __future__ import annotations

import asyncio
import hashlib
from collections.abc import Iterator
from dataclasses import dataclass, field
from itertools import islice

import structlog

from offerletters.config import Settings
from offerletters.errors import RosterTooLarge
from offerletters.letters import Letter, LetterTemplates
from offerletters.queue import Publisher
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
    sheet: str
    notes: list[str] = field(default_factory=list)


def batch_id_for(roster: bytes) -> str:
    """A batch is named by its roster's content, so a re-upload is recognisable."""
    return hashlib.sha256(roster).hexdigest()[:32]


async def ingest(
    data: bytes,
    *,
    publisher: Publisher,
    templates: LetterTemplates,
    settings: Settings,
    options: RosterOptions | None = None,
) -> BatchReceipt:
    """Validate, render and publish a roster; or raise RosterRejected, listing all."""
    if len(data) > settings.max_upload_bytes:
        raise RosterTooLarge("bytes", settings.max_upload_bytes)

    options = options or RosterOptions(max_rows=settings.max_rows)
    roster = await asyncio.to_thread(open_roster, data, options)
    templates.check(roster.extra_columns.keys())
    batch_id = batch_id_for(data)

    rendered = _render(roster.rows(), templates, batch_id, settings)
    errors: list[RowError] = []
    notes: list[str] = []
    published = 0
    async with publisher.batch() as writer:
        while chunk := await asyncio.to_thread(list, islice(rendered, ROWS_PER_CHUNK)):
            for item in chunk:
                if isinstance(item, RowError):
                    errors.append(item)
                elif not errors:
                    letter, item_notes = item
                    notes.extend(item_notes)
                    await writer.put(letter)
                    published += 1

        if errors:
            raise RosterRejected(errors)
        if not published:
            raise RosterRejected(
                [RowError(roster.header_row, None, "the roster has no candidate rows")]
            )

    log.info("batch_received", batch_id=batch_id, letters=published, sheet=roster.sheet)
    return BatchReceipt(batch_id, published, roster.sheet, notes)


def _render(
    rows: Iterator[Candidate | RowError],
    templates: LetterTemplates,
    batch_id: str,
    settings: Settings,
) -> Iterator[tuple[Letter, tuple[str, ...]] | RowError]:
    """Letters (with the row's notes) for good rows; row errors pass through."""
    sender = settings.sender_address
    for row in rows:
        if isinstance(row, RowError):
            yield row
        else:
            notes = tuple(f"row {row.row}: {note}" for note in row.notes)
            yield templates.render(row, batch_id=batch_id, sender=sender), notes
