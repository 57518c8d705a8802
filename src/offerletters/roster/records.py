"""What reading a roster yields and takes: `Candidate` and `RowError` for each
row, `RosterRejected` when any row is wrong, and the `RosterOptions` to read by.
"""

from __future__ import annotations

from collections.abc import Mapping
from dataclasses import dataclass, field
from datetime import date
from decimal import Decimal
from typing import Final

from offerletters.errors import OfferLettersError

__all__ = [
    "DEFAULT_OPTIONS",
    "Candidate",
    "RosterOptions",
    "RosterRejected",
    "RowError",
]


# The extra column that, where a roster has one, greets the candidate.
FIRST_NAME_KEY = "first_name"


@dataclass(frozen=True, slots=True)
class Candidate:
    """One validated roster row, ready to become a letter."""

    row: int  # the row number the spreadsheet program shows (1-based)
    name: str
    email: str
    role: str
    offer_amount: Decimal
    start_date: date
    location: str
    currency: str | None = None  # from an optional Currency column
    extra: Mapping[str, str] = field(default_factory=dict)  # snake_case keys
    notes: tuple[str, ...] = ()  # worth a look, but not blocking


@dataclass(frozen=True, slots=True)
class RowError:
    """Why one roster row (or the header) cannot be used."""

    row: int
    column: str | None
    message: str
    value: str | None = None
    fix: str | None = None


class RosterRejected(OfferLettersError):
    """The roster has row errors; nothing from it may be queued."""

    def __init__(self, errors: list[RowError]) -> None:
        super().__init__(f"the roster has {len(errors)} row error(s)")
        self.errors = errors


@dataclass(frozen=True, slots=True)
class RosterOptions:
    """How to read a roster; the defaults suit an upload from HR."""

    # A sheet named by the caller; otherwise the first visible sheet that
    # holds a roster header.
    sheet: str | None = None
    # More non-blank data rows than this raise RosterTooLarge.
    max_rows: int = 200_000
    allow_duplicate_emails: bool = False
    # How to read ambiguous text dates such as 03/04/2027.
    day_first: bool = True
    # Start dates before this day get a note; None means the day of reading.
    today: date | None = None
    # A workbook is a zip: one that would unpack to more than this, or this
    # many times its packed size, is refused before it is unpacked.
    max_unpacked_bytes: int = 1024 * 1024 * 1024
    max_unpack_ratio: float = 200.0


DEFAULT_OPTIONS: Final = RosterOptions()
