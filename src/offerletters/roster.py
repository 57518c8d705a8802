"""Reading rosters: a spreadsheet in, a stream of candidates and row errors out.

OWNED BY THE ROSTER HELPER: the types below are the contract other modules use;
keep their names and fields, fill in the rest.
"""

from __future__ import annotations

from collections.abc import Iterator, Mapping
from dataclasses import dataclass, field
from datetime import date
from decimal import Decimal

from offerletters.errors import OfferLettersError


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


def read_roster(data: bytes) -> Iterator[Candidate | RowError]:
    raise NotImplementedError
