"""The ledger: the durable record of every batch, every letter and its delivery state.

SQLAlchemy async on SQLite (the default, one file) or PostgreSQL; the schema
comes from the Alembic migrations in offerletters.migrations (`Ledger.migrate`).
"""

from offerletters.ledger.engine import LedgerError, LedgerUnavailable
from offerletters.ledger.records import BatchRecord, LetterOutcome, LetterRecord
from offerletters.ledger.schema import LetterState
from offerletters.ledger.store import Ledger

__all__ = [
    "BatchRecord",
    "Ledger",
    "LedgerError",
    "LedgerUnavailable",
    "LetterOutcome",
    "LetterRecord",
    "LetterState",
]
