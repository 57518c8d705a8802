"""The Ledger: batches and letters in a SQL database, shared by API and workers.

The API records a batch and its queued letters as it publishes them (at once
with `record_batch`, or streaming with `begin_batch` and `add_letters`), and
marks the batch published once Kafka committed it. Workers ask which letters
are already sent before delivering, and record every outcome; a letter once
sent stays sent.
"""

from __future__ import annotations

import contextlib
import functools
from collections.abc import (
    AsyncIterator,
    Callable,
    Collection,
    Iterable,
    Iterator,
    Sequence,
)
from datetime import UTC, datetime
from pathlib import Path
from typing import Any, TypeAlias, TypeVar

import structlog
from alembic import command
from alembic.config import Config
from alembic.runtime.migration import MigrationContext
from sqlalchemy import Connection, Row, Table, delete, func, select, text, update
from sqlalchemy.dialects import postgresql, sqlite
from sqlalchemy.ext.asyncio import AsyncConnection, AsyncEngine

from offerletters.ledger.engine import (
    WRITE,
    LedgerError,
    create_engine,
    database_url,
    describe,
    translated,
)
from offerletters.ledger.records import BatchRecord, LetterOutcome, LetterRecord
from offerletters.ledger.schema import LetterState
from offerletters.ledger.schema import batches as batch_table
from offerletters.ledger.schema import letters as letter_table
from offerletters.letters import Letter
from offerletters.logs import mask_email

__all__ = ["Ledger"]

log = structlog.get_logger(__name__)

# Rows per executemany and ids per IN list: an IN list binds one parameter per
# id, far under SQLite's and PostgreSQL's limit of about 32,000, and each chunk
# lets the event loop serve other tasks while a large batch is written.
CHUNK_ROWS = 1000

# Where the Alembic environment and revisions live, inside the package so an
# installed wheel can migrate.
MIGRATIONS_DIR = Path(__file__).resolve().parent.parent / "migrations"

# A PostgreSQL advisory lock held while migrating, so processes that start
# together take turns instead of racing to create the same tables. SQLite
# needs none: a migration is one BEGIN IMMEDIATE transaction.
MIGRATION_LOCK_KEY = 0x6F66_6665_726C  # "offerl"

# Batch ids this process knows are in the ledger are remembered so recording
# outcomes need not check for them; the set is simply emptied at this size.
KNOWN_BATCHES_LIMIT = 10_000

_SENT = LetterState.SENT.value
_FAILED = LetterState.FAILED.value
_QUEUED = LetterState.QUEUED.value

_Insert: TypeAlias = sqlite.Insert | postgresql.Insert

T = TypeVar("T")


class Ledger:
    """The durable record of every batch and letter; `async with Ledger(url)`.

    `url` is a SQLAlchemy URL: sqlite+aiosqlite:///path.db (the default
    backend, one file) or postgresql+asyncpg://user:password@host/db. The
    schema comes from `migrate()`, never from the code on its own.
    """

    def __init__(self, url: str) -> None:
        self._url = database_url(url)
        backend = self._url.get_backend_name()
        self._insert: Callable[[Table], _Insert] = (
            sqlite.insert if backend == "sqlite" else postgresql.insert
        )
        self._reader: AsyncEngine | None = None
        self._writer: AsyncEngine | None = None
        self._known: set[str] = set()

    @property
    def where(self) -> str:
        """The database URL with its password masked, for logs and messages."""
        return describe(self._url)

    async def start(self) -> None:
        """Connect; raises LedgerUnavailable, naming the fix, when that fails."""
        if self._reader is not None:
            return

        engine = create_engine(self._url)
        try:
            await self._ping(engine)
        except BaseException:
            await engine.dispose()
            raise

        self._reader = engine
        self._writer = engine.execution_options(**{WRITE: True})
        log.info("ledger_started", database=self.where)

    async def stop(self) -> None:
        """Close every connection; safe to call twice."""
        engine, self._reader, self._writer = self._reader, None, None
        if engine is not None:
            await engine.dispose()
            log.info("ledger_stopped", database=self.where)

    async def __aenter__(self) -> Ledger:
        await self.start()
        return self

    async def __aexit__(self, *exc_info: object) -> None:
        await self.stop()

    async def ping(self) -> None:
        """Raise LedgerUnavailable if the database does not answer a query."""
        reader, _ = self._engines()
        await self._ping(reader)

    async def migrate(self) -> None:
        """Create or upgrade the schema to the newest revision; a no-op when there.

        Processes (or tasks) that migrate at once take turns: on PostgreSQL
        through an advisory lock, on SQLite through its write lock, both taken
        before Alembic reads the current revision.
        """
        async with self._transaction(write=True) as connection:
            if connection.dialect.name == "postgresql":
                await connection.execute(
                    select(func.pg_advisory_xact_lock(MIGRATION_LOCK_KEY))
                )
            before, after = await connection.run_sync(_upgrade_to_head)

        if before != after:
            log.info("ledger_migrated", database=self.where, old=before, new=after)

    async def record_batch(
        self, batch_id: str, file_sha256: str, letters: Sequence[Letter]
    ) -> bool:
        """Record a batch and one queued row per letter, all or nothing.

        Returns False, writing nothing, when the batch is already recorded:
        the same roster uploaded again, or an ingest resumed after a crash.
        """
        strays = [letter.row for letter in letters if letter.batch_id != batch_id]
        if strays:
            raise ValueError(f"rows {strays[:5]} belong to another batch")

        now = _now()
        async with self._transaction(write=True) as connection:
            created = await self._insert_batch(
                connection, batch_id, file_sha256, len(letters), now
            )
            if not created:
                log.info("batch_already_recorded", batch_id=batch_id)
                return False

            await self._insert_letters(connection, letters, now)

        self._remember_batches({batch_id})
        log.info("batch_recorded", batch_id=batch_id, letters=len(letters))
        return True

    async def begin_batch(self, batch_id: str, file_sha256: str) -> bool:
        """Record a batch whose letters follow, through `add_letters`, as they stream.

        Returns False when the batch is already recorded, for instance by an
        ingest that crashed; adding its letters again is harmless.
        """
        async with self._transaction(write=True) as connection:
            created = await self._insert_batch(
                connection, batch_id, file_sha256, None, _now()
            )

        self._remember_batches({batch_id})
        log.info("batch_begun", batch_id=batch_id, new=created)
        return created

    async def add_letters(self, letters: Sequence[Letter]) -> None:
        """Add a queued row per letter of begun batches; recorded letters stay as is."""
        if not letters:
            return

        async with self._transaction(write=True) as connection:
            await self._insert_letters(connection, letters, _now())

        log.debug("letters_recorded", letters=len(letters))

    async def mark_published(
        self, batch_id: str, *, letters: int | None = None
    ) -> None:
        """Note that the batch's Kafka transaction committed; the first time counts.

        `letters` sets the batch's letter count, for a batch begun without one.
        """
        values: dict[str, object] = {
            "published_at": func.coalesce(batch_table.c.published_at, _now())
        }
        if letters is not None:
            values["letters"] = letters

        async with self._transaction(write=True) as connection:
            result = await connection.execute(
                update(batch_table)
                .where(batch_table.c.batch_id == batch_id)
                .values(values)
            )

        if result.rowcount == 0:
            raise LedgerError(
                f"batch {batch_id} is not in the ledger; record it before"
                " publishing its letters"
            )

        log.info("batch_published", batch_id=batch_id)

    async def forget_batch(self, batch_id: str) -> bool:
        """Delete a batch never published, and its letters, so it can start over.

        No worker has seen such a batch's letters: Kafka withholds an
        uncommitted transaction. A published batch is kept; returns False.
        """
        async with self._transaction(write=True) as connection:
            result = await connection.execute(
                select(batch_table.c.published_at)
                .where(batch_table.c.batch_id == batch_id)
                .with_for_update()
            )
            batch = result.first()
            if batch is None or batch.published_at is not None:
                return False

            await connection.execute(
                delete(letter_table).where(letter_table.c.batch_id == batch_id)
            )
            await connection.execute(
                delete(batch_table).where(batch_table.c.batch_id == batch_id)
            )

        self._known.discard(batch_id)
        log.info("batch_forgotten", batch_id=batch_id)
        return True

    async def find_batch(self, batch_id: str) -> BatchRecord | None:
        """The batch, or None when the ledger has never heard of it."""
        async with self._transaction() as connection:
            result = await connection.execute(
                select(batch_table).where(batch_table.c.batch_id == batch_id)
            )
            row = result.first()

        return None if row is None else BatchRecord(**row._mapping)

    async def sent_among(self, letter_ids: Collection[str]) -> set[str]:
        """Those of these letters already sent, which must not be sent again."""
        sent: set[str] = set()
        async with self._transaction() as connection:
            for chunk in _chunks(list(letter_ids)):
                # Looked up by id alone and filtered here: with the state in
                # the query, PostgreSQL without fresh statistics scans every
                # sent letter of every batch in the (batch_id, state) index.
                result = await connection.execute(
                    select(letter_table.c.letter_id, letter_table.c.state).where(
                        letter_table.c.letter_id.in_(chunk)
                    )
                )
                sent.update(letter_id for letter_id, state in result if state == _SENT)

        return sent

    async def record_outcomes(self, outcomes: Sequence[LetterOutcome]) -> None:
        """Record what became of these letters, in one transaction.

        A letter already sent keeps that state whatever a later outcome says,
        so a redelivered copy can never turn it into a failure. A letter the
        ledger has never seen (published by an older version) is added, and
        so is its batch.
        """
        settled = _settled(outcomes)
        if not settled:
            return

        unknown = _first_seen(o for o in settled if o.batch_id not in self._known)
        async with self._transaction(write=True) as connection:
            if unknown:
                await connection.execute(
                    self._insert(batch_table).on_conflict_do_nothing(
                        index_elements=[batch_table.c.batch_id]
                    ),
                    [
                        _adopted_batch_row(batch_id, at)
                        for batch_id, at in unknown.items()
                    ],
                )
            await connection.execute(
                self._upsert_outcome, [_outcome_row(o) for o in settled]
            )

        self._remember_batches(unknown.keys())
        log.debug("outcomes_recorded", letters=len(settled))

    async def batch_progress(self, batch_id: str) -> dict[LetterState, int]:
        """How many of the batch's letters are in each state; every state listed."""
        async with self._transaction() as connection:
            result = await connection.execute(
                select(letter_table.c.state, func.count())
                .where(letter_table.c.batch_id == batch_id)
                .group_by(letter_table.c.state)
            )
            counts = result.all()

        progress = dict.fromkeys(LetterState, 0)
        progress.update((LetterState(state), count) for state, count in counts)
        return progress

    async def letters_in(
        self,
        batch_id: str,
        state: LetterState | None = None,
        limit: int = 100,
        offset: int = 0,
    ) -> list[LetterRecord]:
        """A page of the batch's letters in roster order, optionally of one state."""
        if limit < 0 or offset < 0:
            raise ValueError("limit and offset cannot be negative")

        query = select(letter_table).where(letter_table.c.batch_id == batch_id)
        if state is not None:
            query = query.where(letter_table.c.state == state.value)
        query = query.order_by(letter_table.c.row, letter_table.c.letter_id)

        async with self._transaction() as connection:
            result = await connection.execute(query.limit(limit).offset(offset))
            rows = result.all()

        return [_letter_record(row) for row in rows]

    async def failed_letter_ids(self, batch_id: str) -> list[str]:
        """The ids of the batch's failed letters, in roster order."""
        async with self._transaction() as connection:
            found = await connection.scalars(
                select(letter_table.c.letter_id)
                .where(
                    letter_table.c.batch_id == batch_id, letter_table.c.state == _FAILED
                )
                .order_by(letter_table.c.row)
            )
            return list(found)

    async def requeue(self, letter_ids: Collection[str]) -> int:
        """Put failed letters back to queued, keeping their attempts and reply.

        Letters in any other state are left alone. Returns how many moved.
        """
        now = _now()
        requeued = 0
        async with self._transaction(write=True) as connection:
            for chunk in _chunks(list(letter_ids)):
                result = await connection.execute(
                    update(letter_table)
                    .where(
                        letter_table.c.letter_id.in_(chunk),
                        letter_table.c.state == _FAILED,
                    )
                    .values(state=_QUEUED, updated_at=now)
                )
                requeued += result.rowcount

        log.info("letters_requeued", letters=requeued)
        return requeued

    def _engines(self) -> tuple[AsyncEngine, AsyncEngine]:
        if self._reader is None or self._writer is None:
            raise LedgerError(
                "the ledger is not started; use `async with Ledger(url)` or"
                " await its start()"
            )

        return self._reader, self._writer

    @contextlib.asynccontextmanager
    async def _transaction(
        self, *, write: bool = False
    ) -> AsyncIterator[AsyncConnection]:
        """One transaction, committed on success; database errors translated."""
        reader, writer = self._engines()
        with translated(self._url):
            async with (writer if write else reader).begin() as connection:
                yield connection

    async def _ping(self, engine: AsyncEngine) -> None:
        with translated(self._url):
            async with engine.connect() as connection:
                await connection.execute(text("SELECT 1"))

    async def _insert_batch(
        self,
        connection: AsyncConnection,
        batch_id: str,
        file_sha256: str,
        letters: int | None,
        now: datetime,
    ) -> bool:
        """Insert the batch row unless it exists; True when it was new."""
        created = await connection.execute(
            self._insert(batch_table)
            .values(
                batch_id=batch_id,
                created_at=now,
                file_sha256=file_sha256,
                letters=letters,
                published_at=None,
            )
            .on_conflict_do_nothing(index_elements=[batch_table.c.batch_id])
            .returning(batch_table.c.batch_id)
        )
        return created.first() is not None

    async def _insert_letters(
        self, connection: AsyncConnection, letters: Sequence[Letter], now: datetime
    ) -> None:
        """Insert queued rows in chunks, leaving letters already recorded alone."""
        statement = self._insert(letter_table).on_conflict_do_nothing(
            index_elements=[letter_table.c.letter_id]
        )
        for chunk in _chunks(letters):
            await connection.execute(
                statement, [_queued_row(letter, now) for letter in chunk]
            )

    @functools.cached_property
    def _upsert_outcome(self) -> _Insert:
        """INSERT a letter's outcome, or UPDATE its row unless it is already sent.

        Built once: every group commit of a worker runs it, and building it
        costs more than executing it for a handful of letters.
        """
        statement = self._insert(letter_table)
        changing = ("state", "attempts", "last_reply", "updated_at", "sent_at")
        return statement.on_conflict_do_update(
            index_elements=[letter_table.c.letter_id],
            set_={name: statement.excluded[name] for name in changing},
            where=letter_table.c.state != _SENT,
        )

    def _remember_batches(self, batch_ids: Collection[str]) -> None:
        if len(self._known) + len(batch_ids) > KNOWN_BATCHES_LIMIT:
            self._known.clear()
        self._known.update(batch_ids)


def _upgrade_to_head(connection: Connection) -> tuple[str | None, str | None]:
    """Run Alembic's upgrade on this connection; the revisions before and after."""
    config = Config()
    config.set_main_option("script_location", str(MIGRATIONS_DIR))
    # env.py migrates on this connection, inside our transaction, instead of
    # opening its own.
    config.attributes["connection"] = connection

    before = MigrationContext.configure(connection).get_current_revision()
    command.upgrade(config, "head")
    after = MigrationContext.configure(connection).get_current_revision()
    return before, after


def _queued_row(letter: Letter, now: datetime) -> dict[str, object]:
    return {
        "letter_id": letter.letter_id,
        "batch_id": letter.batch_id,
        "row": letter.row,
        "recipient_masked": mask_email(letter.recipient),
        "state": _QUEUED,
        "attempts": 0,
        "last_reply": None,
        "message_id": letter.message_id,
        "queued_at": now,
        "updated_at": now,
        "sent_at": None,
    }


def _outcome_row(outcome: LetterOutcome) -> dict[str, object]:
    sent = outcome.state is LetterState.SENT
    return {
        "letter_id": outcome.letter_id,
        "batch_id": outcome.batch_id,
        "row": outcome.row,
        "recipient_masked": outcome.recipient_masked,
        "state": outcome.state.value,
        "attempts": outcome.attempts,
        "last_reply": outcome.reply,
        "message_id": outcome.message_id,
        "queued_at": outcome.at,
        "updated_at": outcome.at,
        "sent_at": outcome.at if sent else None,
    }


def _adopted_batch_row(batch_id: str, at: datetime) -> dict[str, object]:
    """A batch known only from a worker's outcome: published, origin unknown."""
    return {
        "batch_id": batch_id,
        "created_at": at,
        "file_sha256": None,
        "letters": None,
        "published_at": at,
    }


def _letter_record(row: Row[Any]) -> LetterRecord:
    values = dict(row._mapping)
    values["state"] = LetterState(values["state"])
    return LetterRecord(**values)


def _settled(outcomes: Sequence[LetterOutcome]) -> list[LetterOutcome]:
    """One outcome per letter: a sent one if there is any, else the latest.

    A group may hold a letter twice: an interim and a final outcome, or two
    deliveries of a copy Kafka redelivered. Of two at the same time, the one
    given later wins.
    """
    chosen: dict[str, LetterOutcome] = {}
    for outcome in outcomes:
        kept = chosen.get(outcome.letter_id)
        if kept is None or _rank(outcome) >= _rank(kept):
            chosen[outcome.letter_id] = outcome

    return list(chosen.values())


def _first_seen(outcomes: Iterable[LetterOutcome]) -> dict[str, datetime]:
    """Each batch among the outcomes, with the earliest time one of them names."""
    first: dict[str, datetime] = {}
    for outcome in outcomes:
        seen = first.get(outcome.batch_id)
        first[outcome.batch_id] = outcome.at if seen is None else min(seen, outcome.at)

    return first


def _rank(outcome: LetterOutcome) -> tuple[bool, datetime]:
    return outcome.state is LetterState.SENT, outcome.at


def _chunks(items: Sequence[T]) -> Iterator[Sequence[T]]:
    for start in range(0, len(items), CHUNK_ROWS):
        yield items[start : start + CHUNK_ROWS]


def _now() -> datetime:
    return datetime.now(UTC)
