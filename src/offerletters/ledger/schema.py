"""The ledger's tables as SQLAlchemy Core metadata, and the letter states.

The migrations in offerletters.migrations create and change these tables; this
metadata is what the queries are written against, and a test checks the two
agree.
"""

from __future__ import annotations

from datetime import UTC, datetime
from enum import StrEnum

from sqlalchemy import (
    CheckConstraint,
    Column,
    DateTime,
    Dialect,
    ForeignKey,
    Index,
    Integer,
    MetaData,
    String,
    Table,
    Text,
    TypeDecorator,
)

__all__ = ["LetterState", "UtcDateTime", "batches", "letters", "metadata"]


class LetterState(StrEnum):
    """Where a letter stands: waiting, being retried, or done either way."""

    QUEUED = "queued"
    RETRYING = "retrying"
    SENT = "sent"
    FAILED = "failed"


class UtcDateTime(TypeDecorator[datetime]):
    """A timezone-aware datetime, stored in UTC and always read back aware.

    SQLite has no timezone type and returns naive values; PostgreSQL keeps
    timestamptz. Storing UTC on both makes times compare and sort the same.
    """

    impl = DateTime(timezone=True)
    cache_ok = True

    def process_bind_param(
        self, value: datetime | None, dialect: Dialect
    ) -> datetime | None:
        if value is None:
            return None

        if value.tzinfo is None:
            raise ValueError("the ledger stores timezone-aware datetimes only")

        return value.astimezone(UTC)

    def process_result_value(
        self, value: datetime | None, dialect: Dialect
    ) -> datetime | None:
        if value is None:
            return None

        if value.tzinfo is None:
            return value.replace(tzinfo=UTC)

        return value.astimezone(UTC)


# Constraint names follow one pattern, so a migration can name what it alters
# and the same schema gets the same names on SQLite and PostgreSQL.
metadata = MetaData(
    naming_convention={
        "ix": "ix_%(table_name)s_%(column_0_N_name)s",
        "uq": "uq_%(table_name)s_%(column_0_N_name)s",
        "ck": "ck_%(table_name)s_%(constraint_name)s",
        "fk": "fk_%(table_name)s_%(column_0_name)s_%(referred_table_name)s",
        "pk": "pk_%(table_name)s",
    }
)

# Ids are uuid or hex strings; 64 leaves room for a longer scheme later.
ID_LENGTH = 64
# RFC 5321 caps an address at 254 octets; a masked one is shorter still.
ADDRESS_LENGTH = 320
# A header line may be 998 octets long (RFC 5322).
MESSAGE_ID_LENGTH = 998

batches = Table(
    "batches",
    metadata,
    Column("batch_id", String(ID_LENGTH), primary_key=True),
    Column("created_at", UtcDateTime(), nullable=False),
    # Both unknown for a batch the ledger first heard of from a worker: its
    # letters were published before the ledger recorded batches.
    Column("file_sha256", String(64), nullable=True),
    Column("letters", Integer, nullable=True),
    # Set once the Kafka transaction holding the batch committed; a batch
    # without it was cut short mid-ingest and can be published again.
    Column("published_at", UtcDateTime(), nullable=True),
)

letters = Table(
    "letters",
    metadata,
    Column("letter_id", String(ID_LENGTH), primary_key=True),
    Column(
        "batch_id",
        String(ID_LENGTH),
        ForeignKey(batches.c.batch_id),
        nullable=False,
    ),
    Column("row", Integer, nullable=False),
    Column("recipient_masked", String(ADDRESS_LENGTH), nullable=False),
    Column("state", String(16), nullable=False),
    Column("attempts", Integer, nullable=False),
    Column("last_reply", Text, nullable=True),
    Column("message_id", String(MESSAGE_ID_LENGTH), nullable=False),
    Column("queued_at", UtcDateTime(), nullable=False),
    Column("updated_at", UtcDateTime(), nullable=False),
    Column("sent_at", UtcDateTime(), nullable=True),
    CheckConstraint(
        f"state IN ({', '.join(repr(state.value) for state in LetterState)})",
        name="state",
    ),
    # Progress counts and "letters of a batch in this state" read this one;
    # its leading column also serves as the index of the foreign key.
    Index(None, "batch_id", "state"),
    # Listing a batch's letters in roster order, whatever their state.
    Index(None, "batch_id", "row"),
)
