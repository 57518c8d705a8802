"""What the ledger hands out and takes in: batch and letter records, outcomes."""

from __future__ import annotations

from dataclasses import dataclass
from datetime import UTC, datetime

from offerletters.ledger.schema import LetterState
from offerletters.letters import Letter
from offerletters.logs import mask_email

__all__ = ["BatchRecord", "LetterOutcome", "LetterRecord"]

# What mask_email leaves of a mailbox; a recipient without it was not masked.
MASK = "***"


@dataclass(frozen=True, slots=True)
class BatchRecord:
    """One batch as the ledger knows it.

    `file_sha256` and `letters` are None for a batch the ledger first heard
    of from a worker (its letters were published before the ledger recorded
    batches). `published_at` is None until the batch's letters are in Kafka.
    """

    batch_id: str
    created_at: datetime
    file_sha256: str | None
    letters: int | None
    published_at: datetime | None

    @property
    def published(self) -> bool:
        """True once every letter of the batch is in Kafka."""
        return self.published_at is not None


@dataclass(frozen=True, slots=True)
class LetterRecord:
    """One letter as the ledger knows it; the recipient only masked."""

    letter_id: str
    batch_id: str
    row: int
    recipient_masked: str
    state: LetterState
    attempts: int
    last_reply: str | None
    message_id: str
    queued_at: datetime
    updated_at: datetime
    sent_at: datetime | None


@dataclass(frozen=True, slots=True)
class LetterOutcome:
    """What became of one delivery of a letter, for `Ledger.record_outcomes`.

    `attempts` is how many SMTP attempts that delivery made; the ledger keeps
    the latest figure. `reply` is the server's last answer or the connection
    fault. The identity fields (batch, row, masked recipient, Message-ID) let
    the ledger record a letter it has never seen. Build one with `of`.
    """

    letter_id: str
    state: LetterState
    attempts: int
    reply: str | None
    at: datetime
    batch_id: str
    row: int
    recipient_masked: str
    message_id: str

    def __post_init__(self) -> None:
        if self.state is LetterState.QUEUED:
            raise ValueError("an outcome is retrying, sent or failed, never queued")
        if self.attempts < 0:
            raise ValueError("attempts cannot be negative")
        if self.at.tzinfo is None:
            raise ValueError("an outcome's time must be timezone-aware")
        # The ledger is kept for years and shown to HR: no full addresses.
        if MASK not in self.recipient_masked:
            raise ValueError("recipient_masked must come from mask_email")

    @classmethod
    def of(
        cls,
        letter: Letter,
        state: LetterState,
        *,
        attempts: int,
        reply: str | None = None,
        at: datetime | None = None,
    ) -> LetterOutcome:
        """The outcome of delivering `letter`, stamped now unless `at` is given."""
        return cls(
            letter_id=letter.letter_id,
            state=state,
            attempts=attempts,
            reply=reply,
            at=at or datetime.now(UTC),
            batch_id=letter.batch_id,
            row=letter.row,
            recipient_masked=mask_email(letter.recipient),
            message_id=letter.message_id,
        )
