"""The ledger against real databases: SQLite in a temporary file and PostgreSQL."""

from __future__ import annotations

import asyncio
import sqlite3
import subprocess
import sys
import time
from collections.abc import AsyncIterator
from datetime import UTC, datetime, timedelta, timezone
from pathlib import Path

import pytest
from alembic.autogenerate import compare_metadata
from alembic.runtime.migration import MigrationContext
from sqlalchemy import Connection, inspect, make_url, text
from sqlalchemy.ext.asyncio import create_async_engine

from offerletters.errors import ConfigError
from offerletters.ledger import (
    Ledger,
    LedgerError,
    LedgerUnavailable,
    LetterOutcome,
    LetterState,
)
from offerletters.ledger.schema import metadata
from offerletters.letters import Letter, letter_id_for, message_id_for

REPO = Path(__file__).resolve().parent.parent
ALEMBIC_INI = REPO / "src" / "offerletters" / "migrations" / "alembic.ini"
LEDGER_TABLES = {"alembic_version", "batches", "letters"}
SHA = "ab" * 32
# The first roster row with a candidate: row 1 holds the headers.
FIRST_ROW = 2


@pytest.fixture(params=["sqlite", "postgresql"])
async def database_url(request: pytest.FixtureRequest, tmp_path: Path) -> str:
    """An empty database of each kind the ledger runs on."""
    if request.param == "sqlite":
        return f"sqlite+aiosqlite:///{tmp_path / 'ledger.db'}"

    url: str = request.getfixturevalue("postgres_url")
    await _drop_ledger_tables(url)
    return url


@pytest.fixture
async def ledger(database_url: str) -> AsyncIterator[Ledger]:
    """A started ledger on a migrated, empty database."""
    async with Ledger(database_url) as started:
        await started.migrate()
        yield started


def make_letters(batch_id: str, count: int) -> list[Letter]:
    """Letters as ingest renders them, one per roster row."""
    letters = []
    for row in range(FIRST_ROW, FIRST_ROW + count):
        letter_id = letter_id_for(batch_id, row)
        letters.append(
            Letter(
                letter_id=letter_id,
                batch_id=batch_id,
                row=row,
                recipient=f"candidate{row}@example.com",
                recipient_name=f"Candidate {row}",
                subject="Your offer",
                text="Welcome aboard.",
                html="<p>Welcome aboard.</p>",
                message_id=message_id_for(letter_id, "acme.example"),
            )
        )
    return letters


def outcome(
    letter: Letter,
    state: LetterState,
    *,
    attempts: int = 1,
    reply: str | None = None,
    at: datetime | None = None,
) -> LetterOutcome:
    return LetterOutcome.of(letter, state, attempts=attempts, reply=reply, at=at)


async def test_migrate_creates_the_schema_on_an_empty_database(
    database_url: str,
) -> None:
    """Migrating an empty database creates the tables at the newest revision."""
    assert not await _table_names(database_url) & LEDGER_TABLES

    async with Ledger(database_url) as ledger:
        await ledger.migrate()

    assert await _table_names(database_url) >= LEDGER_TABLES
    assert await _revision(database_url) == "0001"


async def test_migrate_again_changes_nothing(ledger: Ledger) -> None:
    """Migrating a migrated ledger keeps its data and its revision."""
    letters = make_letters("batch-again", 3)
    await ledger.record_batch("batch-again", SHA, letters)

    await ledger.migrate()
    await ledger.migrate()

    progress = await ledger.batch_progress("batch-again")
    assert progress[LetterState.QUEUED] == 3


async def test_ledgers_migrating_at_once_both_succeed(database_url: str) -> None:
    """Two processes starting together may both migrate without tripping up."""
    async with Ledger(database_url) as first, Ledger(database_url) as second:
        await asyncio.gather(first.migrate(), second.migrate())

    assert await _revision(database_url) == "0001"


async def test_migrations_produce_the_schema_the_code_declares(
    ledger: Ledger, database_url: str
) -> None:
    """Alembic finds no difference between the migrated tables and the metadata."""

    def differences(connection: Connection) -> list[object]:
        context = MigrationContext.configure(connection)
        return list(compare_metadata(context, metadata))

    engine = create_async_engine(database_url)
    try:
        async with engine.connect() as connection:
            assert await connection.run_sync(differences) == []
    finally:
        await engine.dispose()


async def test_record_batch_queues_every_letter(ledger: Ledger) -> None:
    """A recorded batch has its file hash and one masked, queued row per letter."""
    letters = make_letters("batch-1", 5)

    assert await ledger.record_batch("batch-1", SHA, letters) is True

    batch = await ledger.find_batch("batch-1")
    assert batch is not None
    assert (batch.file_sha256, batch.letters, batch.published) == (SHA, 5, False)
    assert await ledger.batch_progress("batch-1") == {
        LetterState.QUEUED: 5,
        LetterState.RETRYING: 0,
        LetterState.SENT: 0,
        LetterState.FAILED: 0,
    }
    first = (await ledger.letters_in("batch-1", limit=1))[0]
    assert first.letter_id == letters[0].letter_id
    assert first.recipient_masked == "c***@example.com"
    assert first.message_id == letters[0].message_id
    assert (first.state, first.attempts, first.sent_at) == (LetterState.QUEUED, 0, None)


async def test_record_batch_again_writes_nothing(ledger: Ledger) -> None:
    """Recording a batch id a second time returns False and keeps the first record."""
    await ledger.record_batch("batch-twice", SHA, make_letters("batch-twice", 2))

    again = await ledger.record_batch(
        "batch-twice", "cd" * 32, make_letters("batch-twice", 4)
    )

    batch = await ledger.find_batch("batch-twice")
    assert again is False
    assert batch is not None
    assert (batch.file_sha256, batch.letters) == (SHA, 2)
    assert sum((await ledger.batch_progress("batch-twice")).values()) == 2


async def test_record_batch_refuses_letters_of_another_batch(ledger: Ledger) -> None:
    """A letter rendered for another batch is a bug the ledger refuses to record."""
    with pytest.raises(ValueError, match="another batch"):
        await ledger.record_batch("batch-a", SHA, make_letters("batch-b", 1))

    assert await ledger.find_batch("batch-a") is None


async def test_a_streamed_batch_is_recorded_as_it_is_published(ledger: Ledger) -> None:
    """begin_batch, add_letters in chunks and mark_published give a full record."""
    letters = make_letters("batch-stream", 5)

    assert await ledger.begin_batch("batch-stream", SHA) is True
    await ledger.add_letters(letters[:3])
    await ledger.add_letters(letters[3:])
    unpublished = await ledger.find_batch("batch-stream")
    await ledger.mark_published("batch-stream", letters=5)

    batch = await ledger.find_batch("batch-stream")
    assert unpublished is not None
    assert (unpublished.letters, unpublished.published) == (None, False)
    assert batch is not None
    assert (batch.file_sha256, batch.letters, batch.published) == (SHA, 5, True)
    assert (await ledger.batch_progress("batch-stream"))[LetterState.QUEUED] == 5


async def test_a_resumed_stream_keeps_what_was_recorded(ledger: Ledger) -> None:
    """Beginning a batch again and re-adding its letters keeps their states."""
    letters = make_letters("batch-resume", 3)
    await ledger.begin_batch("batch-resume", SHA)
    await ledger.add_letters(letters[:2])
    await ledger.record_outcomes([outcome(letters[0], LetterState.SENT)])

    again = await ledger.begin_batch("batch-resume", SHA)
    await ledger.add_letters(letters)

    assert again is False
    assert await ledger.batch_progress("batch-resume") == {
        LetterState.QUEUED: 2,
        LetterState.RETRYING: 0,
        LetterState.SENT: 1,
        LetterState.FAILED: 0,
    }


async def test_forget_batch_deletes_only_unpublished_batches(ledger: Ledger) -> None:
    """A batch that never reached Kafka is deleted whole; a published one is kept."""
    await ledger.begin_batch("batch-withdrawn", SHA)
    await ledger.add_letters(make_letters("batch-withdrawn", 3))
    await ledger.record_batch("batch-live", SHA, make_letters("batch-live", 2))
    await ledger.mark_published("batch-live")

    assert await ledger.forget_batch("batch-withdrawn") is True
    assert await ledger.forget_batch("batch-live") is False
    assert await ledger.forget_batch("batch-never") is False

    assert await ledger.find_batch("batch-withdrawn") is None
    assert set((await ledger.batch_progress("batch-withdrawn")).values()) == {0}
    assert (await ledger.batch_progress("batch-live"))[LetterState.QUEUED] == 2
    # Forgotten, the same batch can be recorded afresh.
    assert await ledger.begin_batch("batch-withdrawn", SHA) is True


async def test_unknown_batch_is_none_and_has_no_letters(ledger: Ledger) -> None:
    """A batch the ledger never saw is None, with zero letters in every state."""
    assert await ledger.find_batch("nobody") is None
    assert set((await ledger.batch_progress("nobody")).values()) == {0}


async def test_mark_published_keeps_the_first_time(ledger: Ledger) -> None:
    """A batch is unpublished until marked, and a second mark keeps the first time."""
    await ledger.record_batch("batch-pub", SHA, make_letters("batch-pub", 1))

    await ledger.mark_published("batch-pub")
    first = await ledger.find_batch("batch-pub")
    await ledger.mark_published("batch-pub")
    second = await ledger.find_batch("batch-pub")

    assert first is not None
    assert second is not None
    assert first.published
    assert first.published_at == second.published_at


async def test_mark_published_of_an_unrecorded_batch_fails(ledger: Ledger) -> None:
    """Marking a batch the ledger never recorded is refused, naming the batch."""
    with pytest.raises(LedgerError, match="batch-ghost"):
        await ledger.mark_published("batch-ghost")


async def test_sent_among_names_only_sent_letters(ledger: Ledger) -> None:
    """Only letters recorded as sent come back; queued, failed and unknown do not."""
    letters = make_letters("batch-sent", 4)
    await ledger.record_batch("batch-sent", SHA, letters)
    await ledger.record_outcomes(
        [
            outcome(letters[0], LetterState.SENT, reply="250 OK"),
            outcome(letters[1], LetterState.FAILED, reply="550 no such user"),
        ]
    )

    asked = [letter.letter_id for letter in letters] + ["unknown-letter"]

    assert await ledger.sent_among(asked) == {letters[0].letter_id}
    assert await ledger.sent_among([]) == set()


async def test_sent_among_answers_for_more_ids_than_one_query_holds(
    ledger: Ledger,
) -> None:
    """Asking about thousands of ids at once still finds every sent letter."""
    letters = make_letters("batch-many", 2500)
    await ledger.record_batch("batch-many", SHA, letters)
    await ledger.record_outcomes(
        [outcome(letter, LetterState.SENT) for letter in letters[::500]]
    )

    sent = await ledger.sent_among({letter.letter_id for letter in letters})

    assert sent == {letter.letter_id for letter in letters[::500]}


async def test_outcomes_record_state_attempts_and_reply(ledger: Ledger) -> None:
    """An outcome sets the letter's state, attempts, reply and times."""
    letters = make_letters("batch-out", 2)
    await ledger.record_batch("batch-out", SHA, letters)
    at = datetime(2027, 1, 15, 9, 30, tzinfo=UTC)

    await ledger.record_outcomes(
        [
            outcome(letters[0], LetterState.SENT, attempts=2, reply="250 OK", at=at),
            outcome(letters[1], LetterState.RETRYING, attempts=1, reply="451 later"),
        ]
    )

    sent, retrying = await ledger.letters_in("batch-out")
    assert (sent.state, sent.attempts, sent.last_reply) == (
        LetterState.SENT,
        2,
        "250 OK",
    )
    assert sent.sent_at == at
    assert sent.updated_at == at
    assert (retrying.state, retrying.last_reply, retrying.sent_at) == (
        LetterState.RETRYING,
        "451 later",
        None,
    )


async def test_sent_letter_is_never_downgraded(ledger: Ledger) -> None:
    """A failure recorded after a letter was sent, even in one group, is ignored."""
    letters = make_letters("batch-keep", 3)
    await ledger.record_batch("batch-keep", SHA, letters)
    sent_at = datetime(2027, 1, 15, 9, 0, tzinfo=UTC)
    later = sent_at + timedelta(minutes=5)
    await ledger.record_outcomes(
        [outcome(letters[0], LetterState.SENT, reply="250 OK", at=sent_at)]
    )

    await ledger.record_outcomes(
        [
            outcome(letters[0], LetterState.FAILED, reply="550 gone", at=later),
            # Redelivered within one group, in either order.
            outcome(letters[1], LetterState.SENT, at=sent_at),
            outcome(letters[1], LetterState.FAILED, reply="550 gone", at=later),
            outcome(letters[2], LetterState.FAILED, reply="550 gone", at=later),
            outcome(letters[2], LetterState.SENT, at=sent_at),
        ]
    )

    records = await ledger.letters_in("batch-keep")
    assert [record.state for record in records] == [LetterState.SENT] * 3
    assert records[0].last_reply == "250 OK"
    assert records[0].sent_at == sent_at
    assert records[0].updated_at == sent_at


async def test_of_outcomes_at_the_same_time_the_later_one_wins(ledger: Ledger) -> None:
    """An interim and a final outcome stamped alike leave the final one recorded."""
    letters = make_letters("batch-tie", 1)
    await ledger.record_batch("batch-tie", SHA, letters)
    at = datetime(2027, 1, 15, 9, 0, tzinfo=UTC)

    await ledger.record_outcomes(
        [
            outcome(letters[0], LetterState.RETRYING, reply="451 later", at=at),
            outcome(letters[0], LetterState.FAILED, attempts=2, reply="550", at=at),
        ]
    )

    (record,) = await ledger.letters_in("batch-tie")
    assert (record.state, record.attempts, record.last_reply) == (
        LetterState.FAILED,
        2,
        "550",
    )


async def test_outcomes_of_unknown_letters_are_recorded(ledger: Ledger) -> None:
    """Letters published before the ledger knew their batch are added with the batch."""
    letters = make_letters("batch-old", 2)
    at = datetime(2027, 2, 1, 12, 0, tzinfo=UTC)

    await ledger.record_outcomes(
        [
            outcome(letters[0], LetterState.SENT, at=at),
            outcome(letters[1], LetterState.FAILED, reply="550 no", at=at),
        ]
    )
    # A later outcome for an adopted letter updates it like any other.
    await ledger.record_outcomes([outcome(letters[1], LetterState.SENT, attempts=2)])

    batch = await ledger.find_batch("batch-old")
    assert batch is not None
    assert (batch.file_sha256, batch.letters, batch.published_at) == (None, None, at)
    records = await ledger.letters_in("batch-old")
    assert [(r.row, r.state, r.attempts) for r in records] == [
        (FIRST_ROW, LetterState.SENT, 1),
        (FIRST_ROW + 1, LetterState.SENT, 2),
    ]
    assert records[0].queued_at == at
    assert records[0].recipient_masked == "c***@example.com"


async def test_record_outcomes_of_nothing_is_a_no_op(ledger: Ledger) -> None:
    """An empty group of outcomes writes nothing and raises nothing."""
    await ledger.record_outcomes([])


async def test_letters_in_filters_by_state_and_pages(ledger: Ledger) -> None:
    """Letters come in roster order, of the asked state, one page at a time."""
    letters = make_letters("batch-list", 6)
    await ledger.record_batch("batch-list", SHA, letters)
    await ledger.record_outcomes(
        [
            outcome(letters[1], LetterState.SENT),
            outcome(letters[3], LetterState.SENT),
            outcome(letters[4], LetterState.FAILED, reply="550 no"),
            outcome(letters[5], LetterState.RETRYING, reply="421 busy"),
        ]
    )

    sent = await ledger.letters_in("batch-list", LetterState.SENT)
    queued = await ledger.letters_in("batch-list", LetterState.QUEUED)
    page = await ledger.letters_in("batch-list", None, limit=2, offset=2)

    assert [record.row for record in sent] == [FIRST_ROW + 1, FIRST_ROW + 3]
    assert [record.row for record in queued] == [FIRST_ROW, FIRST_ROW + 2]
    assert [record.row for record in page] == [FIRST_ROW + 2, FIRST_ROW + 3]
    assert await ledger.letters_in("batch-list", LetterState.SENT, offset=2) == []
    with pytest.raises(ValueError, match="negative"):
        await ledger.letters_in("batch-list", limit=-1)


async def test_requeue_moves_only_failed_letters_back(ledger: Ledger) -> None:
    """Failed letters return to queued with attempts and reply kept; others stay."""
    letters = make_letters("batch-retry", 4)
    await ledger.record_batch("batch-retry", SHA, letters)
    await ledger.record_outcomes(
        [
            outcome(letters[0], LetterState.SENT),
            outcome(letters[1], LetterState.FAILED, attempts=5, reply="451 later"),
            outcome(letters[3], LetterState.FAILED, attempts=1, reply="550 no"),
        ]
    )

    failed = await ledger.failed_letter_ids("batch-retry")
    moved = await ledger.requeue([*failed, letters[0].letter_id, "unknown-letter"])

    assert failed == [letters[1].letter_id, letters[3].letter_id]
    assert moved == 2
    assert await ledger.failed_letter_ids("batch-retry") == []
    records = await ledger.letters_in("batch-retry")
    assert [record.state for record in records] == [
        LetterState.SENT,
        LetterState.QUEUED,
        LetterState.QUEUED,
        LetterState.QUEUED,
    ]
    assert (records[1].attempts, records[1].last_reply) == (5, "451 later")


async def test_two_ledgers_write_one_database_at_once(database_url: str) -> None:
    """Two ledgers, like API and worker, write at once without 'database is locked'."""
    big = make_letters("batch-big", 20_000)
    small = make_letters("batch-small", 2_000)
    groups = [small[start : start + 100] for start in range(0, len(small), 100)]

    async with Ledger(database_url) as api, Ledger(database_url) as worker:
        await api.migrate()
        await api.record_batch("batch-small", SHA, small)

        async def deliver(ledger: Ledger, share: list[list[Letter]]) -> None:
            for group in share:
                await ledger.sent_among([letter.letter_id for letter in group])
                await ledger.record_outcomes(
                    [outcome(letter, LetterState.SENT) for letter in group]
                )

        await asyncio.gather(
            api.record_batch("batch-big", SHA, big),
            deliver(api, groups[::2]),
            deliver(worker, groups[1::2]),
        )

        assert (await worker.batch_progress("batch-small"))[LetterState.SENT] == 2_000
        assert (await worker.batch_progress("batch-big"))[LetterState.QUEUED] == 20_000


async def test_record_batch_of_100_000_letters(ledger: Ledger) -> None:
    """A batch of 100,000 letters is recorded whole."""
    letters = make_letters("batch-100k", 100_000)

    started = time.perf_counter()
    await ledger.record_batch("batch-100k", SHA, letters)
    elapsed_s = time.perf_counter() - started

    progress = await ledger.batch_progress("batch-100k")
    assert progress[LetterState.QUEUED] == 100_000
    print(f"recorded 100,000 letters in {elapsed_s:.2f} s")  # shown with -s


async def test_times_come_back_in_utc(ledger: Ledger) -> None:
    """A time given in any timezone is stored as the same instant and read in UTC."""
    letters = make_letters("batch-tz", 1)
    await ledger.record_batch("batch-tz", SHA, letters)
    tokyo = datetime(2027, 3, 1, 18, 0, tzinfo=timezone(timedelta(hours=9)))

    await ledger.record_outcomes([outcome(letters[0], LetterState.SENT, at=tokyo)])

    (record,) = await ledger.letters_in("batch-tz")
    assert record.sent_at == tokyo
    assert record.sent_at is not None
    assert record.sent_at.tzinfo == UTC
    assert record.queued_at.tzinfo == UTC


async def test_an_unmigrated_database_asks_for_migrations(database_url: str) -> None:
    """A ledger whose tables are missing raises LedgerUnavailable naming the fix."""
    async with Ledger(database_url) as ledger:
        with pytest.raises(LedgerUnavailable, match=r"Ledger\.migrate") as raised:
            await ledger.sent_among(["some-letter"])

    assert raised.value.retriable


async def test_unreachable_postgres_names_the_database_but_not_the_password() -> None:
    """A server that does not answer raises LedgerUnavailable without the password."""
    ledger = Ledger("postgresql+asyncpg://offers:hunter2@127.0.0.1:1/ledger")

    with pytest.raises(LedgerUnavailable) as raised:
        await ledger.start()

    message = str(raised.value)
    assert "offers:***@127.0.0.1:1/ledger" in message
    assert "hunter2" not in message
    assert "PostgreSQL runs there" in message
    assert raised.value.retriable


async def test_a_missing_postgres_database_is_unavailable(postgres_url: str) -> None:
    """A URL naming a database the server lacks raises LedgerUnavailable."""
    missing = make_url(postgres_url).set(database="offerletters_no_such_db")
    ledger = Ledger(missing.render_as_string(hide_password=False))

    with pytest.raises(LedgerUnavailable, match="offerletters_no_such_db") as raised:
        await ledger.start()

    assert "database name in OFFERLETTERS_DATABASE_URL" in str(raised.value)


async def test_sqlite_in_a_missing_folder_names_the_fix(tmp_path: Path) -> None:
    """A SQLite file that cannot be created raises LedgerUnavailable with the fix."""
    url = f"sqlite+aiosqlite:///{tmp_path / 'missing' / 'ledger.db'}"

    with pytest.raises(LedgerUnavailable, match="folder exists"):
        await Ledger(url).start()


async def test_sqlite_ledger_uses_wal_and_foreign_keys(tmp_path: Path) -> None:
    """A SQLite ledger file is in WAL mode, so readers and a writer share it."""
    path = tmp_path / "ledger.db"
    async with Ledger(f"sqlite+aiosqlite:///{path}") as ledger:
        await ledger.migrate()

    with sqlite3.connect(path) as connection:
        (mode,) = connection.execute("PRAGMA journal_mode").fetchone()
    connection.close()
    assert mode == "wal"


def test_urls_get_their_async_driver() -> None:
    """Plain sqlite:// and postgres:// URLs are given the async drivers."""
    assert Ledger("sqlite:///x.db").where == "sqlite+aiosqlite:///x.db"
    assert (
        Ledger("postgres://u:secret@db.internal/offers").where
        == "postgresql+asyncpg://u:***@db.internal/offers"
    )


def test_other_databases_are_a_config_error() -> None:
    """A URL for a database the ledger does not run on is refused with the fix."""
    with pytest.raises(ConfigError, match="OFFERLETTERS_DATABASE_URL"):
        Ledger("mysql://u:p@localhost/offers")
    with pytest.raises(ConfigError, match="not a URL"):
        Ledger("not a url")


async def test_a_ledger_not_started_refuses_work_and_stops_twice(
    tmp_path: Path,
) -> None:
    """A ledger used before start raises LedgerError, and stop is safe twice."""
    ledger = Ledger(f"sqlite+aiosqlite:///{tmp_path / 'ledger.db'}")

    with pytest.raises(LedgerError, match="not started"):
        await ledger.ping()

    await ledger.start()
    await ledger.ping()
    await ledger.stop()
    await ledger.stop()


def test_outcomes_refuse_naive_times_and_full_addresses() -> None:
    """An outcome must carry an aware time and a masked recipient."""
    (letter,) = make_letters("batch-check", 1)
    sent = outcome(letter, LetterState.SENT)

    with pytest.raises(ValueError, match="timezone-aware"):
        outcome(letter, LetterState.SENT, at=datetime(2027, 1, 1))  # naive on purpose
    with pytest.raises(ValueError, match="mask_email"):
        LetterOutcome(
            letter_id=sent.letter_id,
            state=sent.state,
            attempts=1,
            reply=None,
            at=sent.at,
            batch_id=sent.batch_id,
            row=sent.row,
            recipient_masked=letter.recipient,
            message_id=sent.message_id,
        )
    with pytest.raises(ValueError, match="never queued"):
        outcome(letter, LetterState.QUEUED)


def test_alembic_command_line_upgrades_and_downgrades(tmp_path: Path) -> None:
    """The alembic command line migrates a database up and back down."""
    path = tmp_path / "ledger.db"
    url = f"sqlite+aiosqlite:///{path}"

    def alembic(*args: str) -> None:
        command = [sys.executable, "-m", "alembic", "-c", str(ALEMBIC_INI)]
        subprocess.run(
            [*command, "-x", f"url={url}", *args],
            check=True,
            capture_output=True,
            timeout=60,
        )

    alembic("upgrade", "head")
    assert _sqlite_tables(path) >= LEDGER_TABLES
    alembic("downgrade", "base")
    assert _sqlite_tables(path) == {"alembic_version"}


async def _drop_ledger_tables(url: str) -> None:
    """Empty a PostgreSQL database that earlier tests used."""
    engine = create_async_engine(url)
    try:
        async with engine.begin() as connection:
            await connection.execute(
                text("DROP TABLE IF EXISTS letters, batches, alembic_version")
            )
    finally:
        await engine.dispose()


async def _table_names(url: str) -> set[str]:
    engine = create_async_engine(url)
    try:
        async with engine.connect() as connection:
            names = await connection.run_sync(
                lambda sync: inspect(sync).get_table_names()
            )
    finally:
        await engine.dispose()
    return set(names)


async def _revision(url: str) -> str | None:
    engine = create_async_engine(url)
    try:
        async with engine.connect() as connection:
            return await connection.run_sync(
                lambda sync: MigrationContext.configure(sync).get_current_revision()
            )
    finally:
        await engine.dispose()


def _sqlite_tables(path: Path) -> set[str]:
    connection = sqlite3.connect(path)
    try:
        rows = connection.execute("SELECT name FROM sqlite_master WHERE type='table'")
        return {name for (name,) in rows}
    finally:
        connection.close()
